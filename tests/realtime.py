"""Real-time safety checked by running: build tests/rt_guard's LD_PRELOAD interposer and run
tests/bela_standin programs under it, natively or for Bela's armhf under qemu-arm.

Under the guard, render() ends the program with exit code RT_GUARD_EXIT and one line on stderr
("rt_guard: malloc called inside render()") as soon as it allocates, frees, locks, sleeps, makes
a blocking call or prints with stdio (see tests/rt_guard/rt_guard.c).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

TESTS = Path(__file__).resolve().parent
RT_GUARD_SOURCE = TESTS / "rt_guard/rt_guard.c"
STANDIN_SOURCE = TESTS / "bela_standin/bela_standin.cpp"
RT_GUARD_EXIT = 86   # rt_guard's exit code for a call that render() must not make

ARMHF_SYSROOT = Path("/usr/arm-linux-gnueabihf")
QEMU_ARM = ["qemu-arm", "-cpu", "cortex-a8", "-L", str(ARMHF_SYSROOT)]   # a Bela's BeagleBone CPU


def bela_include_dir() -> Path:
    """Bela's real headers: $BELA_INCLUDE_DIR, else the shared checkout beside this repository."""
    if os.environ.get("BELA_INCLUDE_DIR"):
        return Path(os.environ["BELA_INCLUDE_DIR"])
    from .conftest import BELA_INCLUDE
    return BELA_INCLUDE


def build_rt_guard(cc: str, out_dir: Path) -> Path:
    """librt_guard.so built with the C compiler `cc` ("cc", "arm-linux-gnueabihf-gcc"...)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    library = out_dir / "librt_guard.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(library), str(RT_GUARD_SOURCE), "-ldl"],
                   check=True, capture_output=True, text=True)
    return library


def build_standin(cxx: str, sources: list[Path], program: Path, flags: list[str] = []) -> Path:
    """A project's C++ `sources` (render.cpp...) with the Bela stand-in, against Bela's headers."""
    subprocess.run([cxx, "-std=c++17", "-O2", "-I", str(bela_include_dir()), *flags, *map(str, sources),
                    str(STANDIN_SOURCE), "-o", str(program), "-lpthread", "-ldl"],
                   check=True, capture_output=True, text=True)
    return program


def run_standin(program: Path, args: list[str], *, cwd: Path, guard: Path | None, prefix: list[str] = [],
                timeout: float = 60, guard_options: dict[str, str] = {}) -> subprocess.CompletedProcess:
    """Run a stand-in program (through an emulator `prefix` such as QEMU_ARM), with the rt_guard
    library `guard` preloaded when given. Natively LD_PRELOAD is set in the program's environment;
    under qemu-user it must reach the guest's loader and not qemu's own, so it goes through
    qemu's -E option (the same as QEMU_SET_ENV=LD_PRELOAD=...), and so do guard_options
    (RT_GUARD_PAGE_FAULTS, RT_GUARD_MARKERS: see rt_guard.c)."""
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    command = [*prefix, str(program), *args]
    if guard is not None:
        guard = Path(guard).resolve()
        if prefix and Path(prefix[0]).name.startswith("qemu-"):
            options = [item for name, value in guard_options.items() for item in ("-E", f"{name}={value}")]
            command = [prefix[0], "-E", f"LD_PRELOAD={guard}", *options, *prefix[1:], str(program), *args]
        elif prefix:
            raise ValueError(f"no known way to preload a library through {prefix[0]}")
        else:
            env.update(guard_options, LD_PRELOAD=str(guard))
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
