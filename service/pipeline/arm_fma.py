"""The Bela's kernels multiply and add where IREE wrote a fused multiply-add.

IREE 3.13 approximates tanh, exp, log, sin... with polynomials written as `math.fma`, which
becomes `llvm.fma`. The Cortex-A8 has no fused multiply-add (VFPv4 came later; `+vfp4` code
would not run on the board), so LLVM calls libm's `fmaf` once per vector lane, and glibc's
`fmaf` is an exactly rounded software routine: simple_rnn spent more than half its instructions
there. IREE has no flag that unfuses them for a CPU target (its unfuse pass exists but is not
in the CPU pipeline, and the executable preprocessing hook runs before the approximations
exist), so the kernel library is linked with our own `fmaf`, a NEON multiply then add
(arm_fmaf.S): the system linker IREE runs for armv7 is a wrapper that adds that object. EmitC's
static kernels get the same routine under a private name (static_kernels_with_fmaf).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import ToolMissing
from . import cache
from .tools import run_tool, system_tool

SOURCE = Path(__file__).with_name("arm_fmaf.S")
PACKAGE = "binutils-arm-linux-gnueabihf"
PRIVATE_PREFIX = "bela_iree_"   # our routines' names in a static link (EmitC), beside the C library's


def _assembled() -> Path:
    """arm_fmaf.S assembled (fmaf.o) beside a linker wrapper that adds it (ld-with-fmaf), cached
    per content (its path is part of the compile flags, so a change of either file is a new
    compile cache key)."""
    ld = system_tool("arm-linux-gnueabihf-ld", PACKAGE)
    assembler = system_tool("arm-linux-gnueabihf-as", PACKAGE)
    store = cache.Cache("arm-fmaf")
    key = cache.digest(SOURCE.read_bytes(), ld, assembler)
    entry = store.get(key)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="bela-iree-fmaf-") as tmp:
            out = Path(tmp) / "out"
            out.mkdir()
            _check(run_tool([assembler, "-o", str(out / "fmaf.o"), str(SOURCE)], timeout=60, stage="compile"),
                   "could not assemble the Bela kernels' fmaf")
            wrapper = out / "ld-with-fmaf"
            # the final entry's path is only known after put(): the wrapper finds its object beside itself
            wrapper.write_text(f'#!/bin/sh\nexec {ld} "$@" "$(dirname "$0")/fmaf.o"\n')
            wrapper.chmod(0o755)
            entry = store.put(key, out)
    return entry


def linker_with_fmaf() -> str:
    """A linker for IREE's --iree-llvmcpu-system-linker-path that links arm_fmaf.S's fmaf into
    every kernel library (a shared library: its fmaf is its own)."""
    return str(_assembled() / "ld-with-fmaf")


def static_kernels_with_fmaf(kernels: Path, work: Path) -> list[Path]:
    """For EmitC's static kernels (kernels.o, linked into the Bela program): the kernels calling
    arm_fmaf.S's routines under private names, and those routines, as two objects in work. In a
    static link a plain `fmaf` would replace the C library's for the whole program; renamed, the
    user's own code keeps the exactly rounded one."""
    objcopy = system_tool("arm-linux-gnueabihf-objcopy", PACKAGE)
    nm = system_tool("arm-linux-gnueabihf-nm", PACKAGE)
    routines = _assembled() / "fmaf.o"
    listed = run_tool([nm, "-g", "--defined-only", str(routines)], timeout=60, stage="compile")
    _check(listed, "could not list arm_fmaf.S's routines")
    renames = [f"--redefine-sym={name}={PRIVATE_PREFIX}{name}" for *_, name in map(str.split, listed.stdout.splitlines())]
    outputs = [work / "kernels.o", work / f"{PRIVATE_PREFIX}fmaf.o"]
    for source, output in zip((kernels, routines), outputs):
        _check(run_tool([objcopy, *renames, str(source), str(output)], timeout=60, stage="compile"),
               f"could not rename the multiply-add in {source.name}")
    return outputs


def _check(result, failure: str) -> None:
    if result.returncode != 0:
        raise ToolMissing(failure, detail=result.stderr, hint=f"apt-get install {PACKAGE}")
