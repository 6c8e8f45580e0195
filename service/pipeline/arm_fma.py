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
libm: simple_rnn's and transformer_block's kernels import nothing.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import ToolMissing
from . import cache
from .tools import run_tool, system_tool

SOURCES = (Path(__file__).with_name("arm_fmaf.S"), Path(__file__).with_name("arm_floor_max.S"))
PACKAGE = "binutils-arm-linux-gnueabihf"


def linker_with_fmaf() -> str:
    """A linker for IREE's --iree-llvmcpu-system-linker-path that links SOURCES' fmaf, floorf,
    fmaxf and fminf into every kernel library. Built once per content (its path is part of the compile flags, so a
    change of either file is a new compile cache key)."""
    ld = system_tool("arm-linux-gnueabihf-ld", PACKAGE)
    assembler = system_tool("arm-linux-gnueabihf-as", PACKAGE)
    store = cache.Cache("arm-fmaf")
    key = cache.digest(*(source.read_bytes() for source in SOURCES), ld, assembler)
    entry = store.get(key)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="bela-iree-fmaf-") as tmp:
            out = Path(tmp) / "out"
            out.mkdir()
            objects = []
            for source in SOURCES:
                objects.append(f"{source.stem}.o")
                result = run_tool([assembler, "-o", str(out / objects[-1]), str(source)], timeout=60, stage="compile")
                if result.returncode != 0:
                    raise ToolMissing(f"could not assemble the Bela kernels' {source.name}", detail=result.stderr,
                                      hint=f"apt-get install {PACKAGE}")
            wrapper = out / "ld-with-fmaf"
            # the final entry's path is only known after put(): the wrapper finds its objects beside itself
            linked = " ".join(f'"$here/{name}"' for name in objects)
            wrapper.write_text(f'#!/bin/sh\nhere="$(dirname "$0")"\nexec {ld} "$@" {linked}\n')
            wrapper.chmod(0o755)
            entry = store.put(key, out)
    return str(entry / "ld-with-fmaf")
