"""The Bela's kernels multiply and add where IREE wrote a fused multiply-add.

IREE 3.13 approximates tanh, exp, log, sin... with polynomials written as `math.fma`, which
becomes `llvm.fma`. The Cortex-A8 has no fused multiply-add (VFPv4 came later; `+vfp4` code
would not run on the board), so LLVM calls libm's `fmaf` once per vector lane, and glibc's
`fmaf` is an exactly rounded software routine: simple_rnn spent more than half its instructions
there. IREE has no flag that unfuses them for a CPU target (its unfuse pass exists but is not
in the CPU pipeline, and the executable preprocessing hook runs before the approximations
exist), so the kernel library is linked with our own `fmaf`, a NEON multiply then add
(arm_fmaf.S): the system linker IREE runs for armv7 is a wrapper that adds that object.

The same goes for the two other libm functions IREE's Bela kernels call: `floorf` (the range
reduction of exp and sin) and `fmaxf` (softmax's max, arith.maxnumf), which need ARMv8's vrintm
and vmaxnm; arm_floor_max.S has NEON versions of both (and `fminf`), so no dispatch calls into
libm: simple_rnn's and transformer_block's kernels import nothing. EmitC's static kernels get
the same routines under private names (static_kernels_with_fmaf).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import ToolMissing
from . import cache
from .tools import run_tool, system_tool

SOURCES = (Path(__file__).with_name("arm_fmaf.S"), Path(__file__).with_name("arm_floor_max.S"))
PACKAGE = "binutils-arm-linux-gnueabihf"
PRIVATE_PREFIX = "bela_iree_"   # our routines' names in a static link (EmitC), beside the C library's


def _assembled() -> tuple[Path, list[str]]:
    """SOURCES assembled (one object each) beside a linker wrapper that adds them (ld-with-fmaf),
    cached per content (the wrapper's path is part of the compile flags, so a change of any
    file is a new compile cache key): the cache entry and the objects' names."""
    ld = system_tool("arm-linux-gnueabihf-ld", PACKAGE)
    assembler = system_tool("arm-linux-gnueabihf-as", PACKAGE)
    objects = [f"{source.stem}.o" for source in SOURCES]
    store = cache.Cache("arm-fmaf")
    key = cache.digest(*(source.read_bytes() for source in SOURCES), ld, assembler)
    entry = store.get(key)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="bela-iree-fmaf-") as tmp:
            out = Path(tmp) / "out"
            out.mkdir()
            for source, name in zip(SOURCES, objects):
                _check(run_tool([assembler, "-o", str(out / name), str(source)], timeout=60, stage="compile"),
                       f"could not assemble the Bela kernels' {source.name}")
            wrapper = out / "ld-with-fmaf"
            # the final entry's path is only known after put(): the wrapper finds its objects beside itself
            linked = " ".join(f'"$here/{name}"' for name in objects)
            wrapper.write_text(f'#!/bin/sh\nhere="$(dirname "$0")"\nexec {ld} "$@" {linked}\n')
            wrapper.chmod(0o755)
            entry = store.put(key, out)
    return entry, objects


def linker_with_fmaf() -> str:
    """A linker for IREE's --iree-llvmcpu-system-linker-path that links SOURCES' fmaf, floorf,
    fmaxf and fminf into every kernel library (a shared library: the routines are its own)."""
    return str(_assembled()[0] / "ld-with-fmaf")


def static_kernels_with_fmaf(kernels: Path, work: Path) -> list[Path]:
    """For EmitC's static kernels (kernels.o, linked into the Bela program): the kernels calling
    SOURCES' routines under private names, and those routines, as objects in work. In a static
    link a plain `fmaf` or `floorf` would replace the C library's for the whole program; renamed,
    the user's own code keeps the C library's."""
    objcopy = system_tool("arm-linux-gnueabihf-objcopy", PACKAGE)
    nm = system_tool("arm-linux-gnueabihf-nm", PACKAGE)
    entry, names = _assembled()
    routines = [entry / name for name in names]
    renames = []
    for routine in routines:
        listed = run_tool([nm, "-g", "--defined-only", str(routine)], timeout=60, stage="compile")
        _check(listed, f"could not list the routines of {routine.name}")
        renames += [f"--redefine-sym={name}={PRIVATE_PREFIX}{name}" for *_, name in map(str.split, listed.stdout.splitlines())]
    outputs = [work / "kernels.o", *(work / f"{PRIVATE_PREFIX}{name}" for name in names)]
    for source, output in zip([kernels, *routines], outputs):
        _check(run_tool([objcopy, *renames, str(source), str(output)], timeout=60, stage="compile"),
               f"could not rename the Bela routines in {source.name}")
    return outputs


def _check(result, failure: str) -> None:
    if result.returncode != 0:
        raise ToolMissing(failure, detail=result.stderr, hint=f"apt-get install {PACKAGE}")
