"""iree-compile flags that keep the Bela's hot loops free of calls and of transposes.

- IREE approximates tanh, exp, sin... with polynomials of `math.fma` and reduces arguments with
  `math.floor`; the Cortex-A8 has neither a fused multiply-add nor a rounding instruction, so
  LLVM called fmaf and floorf once per vector lane (arm_fma.py links our own, but a call per
  lane is still ~10 instructions where NEON needs one). Each executable is preprocessed here:
  IREE's math-transform pass expands the functions first, then arm_math_rewrite.py turns every
  fma into a multiply and an add and every floor into conversions and a select, all of which
  vectorize: siren_mlp's sin went from ~80 instructions per value to a few.
- A Linear's weight is stored [out, in]; IREE folds the transpose into the matmul, and on ARMv7
  the vectorized product then shuffles the weights on every step (1.35 instructions per
  multiply-add). Without transpose propagation the transpose of the constant weight is
  evaluated at compile time and the matmul reads [in, out] rows, which the tuning spec's ARMv7
  matmul config (tuning_spec.MATMUL_TILE) turns into 0.60.

Softmax is decomposed in the same preprocessing so that its exp goes the same way
(transformer_block 95.9 -> 87.0 M instructions per call). iree-compile looks a preprocessing tool up by name in PATH, so the rewrite runs through `sh` and
a wrapper script stored by content (a change of the rewrite is a change of the compile flags,
so of the compile cache key).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from . import cache
from .targets import Target

REWRITE = Path(__file__).with_name("arm_math_rewrite.py")
# softmax is decomposed first, so that its exp is expanded (and rewritten) here too
MATH_TRANSFORM = ("builtin.module(hal.executable.variant(builtin.module(func.func(iree-codegen-decompose-softmax))),"
                  "iree-codegen-math-transform)")


def rewrite_command() -> str:
    """`sh WRAPPER`: the wrapper runs arm_math_rewrite.py (a copy stored beside it) on stdin."""
    source = REWRITE.read_text()
    folder = cache.cache_root() / "arm-math" / cache.digest(source, sys.executable)
    wrapper = folder / "rewrite.sh"
    if not wrapper.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REWRITE.name).write_text(source)
        fd, staging = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(f'exec "{sys.executable}" -I -S "{folder / REWRITE.name}"\n')
        os.replace(staging, wrapper)
    return f"sh {wrapper}"


def flags(target: Target) -> list[str]:
    """The flags for ARMv7 targets (none for others: their cores fuse, round and shuffle in one instruction)."""
    if target.arch != "armv7":
        return []
    return ["--iree-global-opt-propagate-transposes=false",
            # an executable goes to the rewrite as text, which leaves out the data of the
            # constants IREE inlines into it (a convolution's bias: "resource does not exist"):
            # no constant is inlined, each is read from its buffer
            "--iree-flow-inline-constants-max-byte-length=0",
            f"--iree-hal-preprocess-executables-with={MATH_TRANSFORM}",
            f"--iree-hal-preprocess-executables-with={rewrite_command()}"]
