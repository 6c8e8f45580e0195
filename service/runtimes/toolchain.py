"""How the IREE runtime is compiled for each board.

Boards run older Debian releases than the computer building for them: Bela's repository keeps
image resources for Debian 9 "Stretch" (glibc 2.24) and 11 "Bullseye" (glibc 2.31), and boards
in the field run either, so we build for the older. Debian 12's cross compilers link against its own glibc 2.36,
so what they build needs GLIBC_2.34 and would not start on a Bela. Zig's C compiler (the
`ziglang` package) links against the glibc version we name instead, with clang and the board's
CPU: that is what board builds use. The computer itself ("host") uses its own compiler.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolMissing
from ..pipeline.targets import Target

OLDEST_GLIBC = "2.24"    # Debian 9 (Stretch), the oldest Bela image


@dataclass(frozen=True)
class Toolchain:
    zig_target: str | None   # None: the host's own compilers
    cpu: str | None

    @property
    def cross(self) -> bool:
        return self.zig_target is not None

    def describe(self) -> str:
        return f"zig cc -target {self.zig_target} -mcpu={self.cpu}" if self.cross else "host cc"

    def write(self, folder: Path) -> Path:
        """Compiler wrappers and a CMake toolchain file in folder; returns the toolchain file."""
        folder.mkdir(parents=True, exist_ok=True)
        zig = shlex.quote(str(zig_binary()))
        # UBSan is on by default in zig cc; the runtime is built as release code
        flags = f"-target {self.zig_target} -mcpu={self.cpu} -fno-sanitize=all"
        for name, command in (("cc", f"cc {flags}"), ("c++", f"c++ {flags}"), ("ar", "ar"), ("ranlib", "ranlib")):
            wrapper = folder / f"zig-{name}"
            wrapper.write_text(f'#!/bin/sh\nexec {zig} {command} "$@"\n')
            wrapper.chmod(0o755)
        processor = "armv7" if self.zig_target.startswith("arm") else "aarch64"
        toolchain = folder / "toolchain.cmake"
        toolchain.write_text("\n".join([
            "set(CMAKE_SYSTEM_NAME Linux)",
            f"set(CMAKE_SYSTEM_PROCESSOR {processor})",
            f"set(CMAKE_C_COMPILER {folder}/zig-cc)",
            f"set(CMAKE_CXX_COMPILER {folder}/zig-c++)",
            f"set(CMAKE_AR {folder}/zig-ar)",
            f"set(CMAKE_RANLIB {folder}/zig-ranlib)",
            # clang rejects a narrowing in IREE's futex.h on 32-bit (time_t is 32 bits there)
            'set(CMAKE_CXX_FLAGS_INIT "-Wno-c++11-narrowing")', ""]))
        return toolchain

    def compilers(self, folder: Path) -> dict[str, str]:
        """CC/CXX/AR for make; a cross toolchain's wrappers are written into folder first."""
        if self.cross and not (folder / "zig-cc").exists():
            self.write(folder)
        if not self.cross:
            return {"CC": "cc", "CXX": "c++", "AR": "ar"}
        return {"CC": str(folder / "zig-cc"), "CXX": str(folder / "zig-c++"), "AR": str(folder / "zig-ar")}


def toolchain_for(target: Target) -> Toolchain:
    if target.arch == "x86_64":
        return Toolchain(None, None)
    if target.arch == "armv7":
        # Cortex-A8: armv7-a with NEON and VFPv3; gnueabihf is the hard-float ABI Bela uses
        return Toolchain(f"arm-linux-gnueabihf.{OLDEST_GLIBC}", "cortex_a8")
    return Toolchain(f"aarch64-linux-gnu.{OLDEST_GLIBC}", target.cpu.replace("-", "_"))


def zig_binary() -> Path:
    try:
        import ziglang
    except ImportError:
        raise ToolMissing("zig (the ziglang package) is not installed",
                          hint="reinstall the project: make test (or pip install -e .)") from None
    return Path(ziglang.__file__).parent / "zig"
