"""Checks on the kernel library inside a Bela (armv7) .vmfb, before it ever reaches a board.

With system linking, the .vmfb carries the dispatch kernels as an ELF shared library, which
the runtime's system-library loader dlopen()s on the board. That library must be 32-bit ARM,
hard-float, NEON, and import nothing but what the board's libc and libm provide (an
unresolved import is a load failure on stage). The board's libraries are stood in for by
Debian's armhf cross libc (package libc6-armhf-cross), the same glibc family as Bela's.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from .tools import run_tool, system_tool

ARMHF_LIBS = [Path("/usr/arm-linux-gnueabihf/lib/libc.so.6"), Path("/usr/arm-linux-gnueabihf/lib/libm.so.6")]


@dataclass
class KernelReport:
    elf_class: str
    machine: str
    hard_float: bool
    neon: bool
    imports: list[str]
    unresolved: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.elf_class == "ELF32" and self.machine == "ARM" and self.hard_float and self.neon
                and not self.unresolved)

    def problems(self) -> list[str]:
        found = []
        if self.elf_class != "ELF32" or self.machine != "ARM":
            found.append(f"kernels are {self.elf_class} {self.machine}, not 32-bit ARM")
        if not self.hard_float:
            found.append("kernels do not use the hard-float ABI")
        if not self.neon:
            found.append("kernels do not use NEON")
        if self.unresolved:
            found.append(f"kernels import symbols the board's libc/libm lack: {', '.join(self.unresolved)}")
        return found


def embedded_elf(vmfb: Path) -> bytes:
    data = vmfb.read_bytes()
    start = data.find(b"\x7fELF")
    if start < 0:
        raise ValueError(f"{vmfb} holds no ELF kernel library")
    return data[start:]


def inspect_armv7_kernels(vmfb: Path, work: Path) -> KernelReport:
    library = work / "kernels.so"
    library.write_bytes(embedded_elf(vmfb))
    text = _readelf("-h", "-A", "--dyn-syms", "-W", str(library))
    imports = sorted({m.group(1) for m in re.finditer(r"\s(?:FUNC|NOTYPE|OBJECT)\s+(?:GLOBAL|WEAK)\s+\w+\s+UND\s+(\S+)", text)})
    imports = [name.split("@")[0] for name in imports]
    provided = board_symbols()
    return KernelReport(
        elf_class=_field(text, "Class"), machine=_field(text, "Machine"),
        hard_float="hard-float ABI" in text and "Tag_ABI_VFP_args: VFP registers" in text,
        neon="Tag_Advanced_SIMD_arch: NEON" in text,
        imports=imports,
        unresolved=[name for name in imports if provided is not None and name not in provided])


@functools.cache
def board_symbols() -> frozenset[str] | None:
    """Functions and data exported by the armhf libc and libm (None if they are not installed)."""
    if not all(lib.exists() for lib in ARMHF_LIBS):
        return None
    names = set()
    for lib in ARMHF_LIBS:
        for m in re.finditer(r"\s(?:FUNC|OBJECT|IFUNC)\s+(?:GLOBAL|WEAK)\s+\w+\s+\d+\s+(\S+)", _readelf("--dyn-syms", "-W", str(lib))):
            names.add(m.group(1).split("@")[0])
    return frozenset(names)


def _readelf(*args: str) -> str:
    readelf = system_tool("arm-linux-gnueabihf-readelf", "binutils-arm-linux-gnueabihf")
    return run_tool([readelf, *args], timeout=60, stage="compile").stdout


def _field(text: str, name: str) -> str:
    m = re.search(rf"^\s*{name}:\s+(.*)$", text, re.M)
    return m.group(1).strip() if m else "unknown"


def glibc_versions_needed(program: Path) -> list[tuple[int, ...]]:
    """The GLIBC_x.y symbol versions an ELF program or library asks its C library for."""
    text = _readelf("--version-info", "-W", str(program))
    return sorted({tuple(int(x) for x in m.group(1).split(".")) for m in re.finditer(r"Name: GLIBC_([0-9.]+)", text)})
