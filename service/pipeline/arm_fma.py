"""The Bela's kernels multiply and add where IREE wrote a fused multiply-add.

IREE 3.13 approximates tanh, exp, log, sin... with polynomials written as `math.fma`, which
becomes `llvm.fma`. The Cortex-A8 has no fused multiply-add (VFPv4 came later; `+vfp4` code
would not run on the board), so LLVM calls libm's `fmaf` once per vector lane, and glibc's
`fmaf` is an exactly rounded software routine: simple_rnn spent more than half its instructions
there. IREE has no flag that unfuses them for a CPU target (its unfuse pass exists but is not
in the CPU pipeline, and the executable preprocessing hook runs before the approximations
exist), so the kernel library is linked with our own `fmaf`, a NEON multiply then add
(arm_fmaf.S): the system linker IREE runs for armv7 is a wrapper that adds that object.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import ToolMissing
from . import cache
from .tools import run_tool, system_tool

SOURCE = Path(__file__).with_name("arm_fmaf.S")
PACKAGE = "binutils-arm-linux-gnueabihf"


def linker_with_fmaf() -> str:
    """A linker for IREE's --iree-llvmcpu-system-linker-path that links arm_fmaf.S's fmaf into
    every kernel library. Built once per content (its path is part of the compile flags, so a
    change of either file is a new compile cache key)."""
    ld = system_tool("arm-linux-gnueabihf-ld", PACKAGE)
    assembler = system_tool("arm-linux-gnueabihf-as", PACKAGE)
    store = cache.Cache("arm-fmaf")
    key = cache.digest(SOURCE.read_bytes(), ld, assembler)
    entry = store.get(key)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="bela-iree-fmaf-") as tmp:
            out = Path(tmp) / "out"
            out.mkdir()
            result = run_tool([assembler, "-o", str(out / "fmaf.o"), str(SOURCE)], timeout=60, stage="compile")
            if result.returncode != 0:
                raise ToolMissing("could not assemble the Bela kernels' fmaf", detail=result.stderr,
                                  hint=f"apt-get install {PACKAGE}")
            wrapper = out / "ld-with-fmaf"
            # the final entry's path is only known after put(): the wrapper finds its object beside itself
            wrapper.write_text(f'#!/bin/sh\nexec {ld} "$@" "$(dirname "$0")/fmaf.o"\n')
            wrapper.chmod(0o755)
            entry = store.put(key, out)
    return str(entry / "ld-with-fmaf")
