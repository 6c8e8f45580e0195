"""IREE's inline HAL for the boards: a dispatch is a function call, with no command buffer,
fence, semaphore or queue allocation around it.

The default (async) execution model makes every call of a model a dozen HAL calls through the
VM (allocate the output and transients on the queue, create fences, replay a command buffer,
wait); on a Cortex-A8 that was some 16 k instructions per dispatch before any arithmetic.
`--iree-execution-model=inline-dynamic` compiles the model to the `hal_inline` and
`hal_loader` modules instead: buffers are plain memory and each dispatch calls the kernel
library directly (runtime/src/model.c registers both modules).

Two things IREE 3.13 needs for it, both found here (docs/design.md, "Inline HAL"):
- the torch input makes `$async` entry points, which the inline conversion cannot lower
  ("failed to legalize hal.devices.get", iree-org/iree#17584): only the synchronous ones are
  made (`--iree-torch-emit-async-entry-points=false`; state in globals still works);
- the packed constants' initializer is lost: util.fold-globals folds the constant buffer into
  the global and drops it (every model with weights then fails with "ref is null" in
  hal_loader.executable.dispatch). The model is compiled to the stream phase, each constant's
  initializer is given the mapped buffer directly (the file-read fallback is for devices with
  their own memory) behind an optimization barrier, and compiled on from there;
- the inline pipeline runs no `--iree-hal-preprocess-executables-with` step, where Bela's math
  rewrite lives (arm_math.py): without it IREE's tanh/exp approximations call fmaf per lane (the
  starter's kernels, 4.6 k -> 20 k instructions). iree-opt runs the device assignment, the
  configuration and those preprocessing steps on the stream-phase IR first; the inline pipeline
  then finds the executables configured and preprocessed, and translates them.
"""
from __future__ import annotations

import re
from pathlib import Path

INLINE_FLAGS = ("--iree-torch-emit-async-entry-points=false", "--iree-execution-model=inline-dynamic")
FIX_VERSION = "inline-constants-5"   # in the compile cache key: bump when keep_constants changes

_FALLBACK = re.compile(r"cf\.cond_br (%did_map\w*), (\^bb\d+)\(([^)]*)\), (\^bb\d+)\n\s*\4:.*\n(?:.*\n)*?\s*cf\.br \2\([^)]*\)\n")
_TRY_MAP = re.compile(r"^(\s*)(%\S+, %\S+ = stream\.resource\.try_map on\([^)]*\) )(%\w+)\[", re.M)


def keep_constants(stream_ir: str) -> tuple[str, int]:
    """stream_ir with every constant initializer kept through the inline conversion, and how
    many were found."""
    text, fallbacks = _FALLBACK.subn(lambda m: f"cf.br {m.group(2)}({m.group(3)})\n", stream_ir)

    def barrier(m: re.Match) -> str:
        indent, head, name = m.group(1), m.group(2), m.group(3)
        return f"{indent}{name}_kept = util.optimization_barrier {name} : !util.buffer\n{indent}{head}{name}_kept["
    text, mapped = _TRY_MAP.subn(barrier, text)
    return text, min(fallbacks, mapped)


PREPROCESS = "--iree-hal-preprocess-executables-with="


def phase_argvs(compiler: str, mlir: Path, flags: list[str], stream: Path, out: Path) -> tuple[list[str], list[str]]:
    """The two iree-compile runs: to the stream phase (then keep_constants and preprocess_argv),
    and on from it."""
    rest = [f for f in flags if not f.startswith(PREPROCESS)]
    return ([compiler, str(mlir), *flags, "--compile-to=stream", "-o", str(stream)],
            [compiler, str(stream), *rest, "--compile-from=stream", "-o", str(out)])


def preprocess_argv(opt: str, flags: list[str], stream: Path) -> list[str] | None:
    """iree-opt assigning devices, configuring executables and running each of the flags'
    `--iree-hal-preprocess-executables-with` steps on the stream-phase IR, written beside it
    (CONFIGURED: iree-opt truncates its output before it has read its input); None when the
    flags have none."""
    steps = []
    for value in (f[len(PREPROCESS):] for f in flags if f.startswith(PREPROCESS)):
        if value.startswith("builtin.module("):   # a pass pipeline, else a command (as IREE decides)
            steps.append(f'hal.executable(iree-hal-preprocess-executables-with-pipeline{{pipeline="{value}"}})')
        else:
            steps.append(f'hal.executable(iree-hal-preprocess-executables-with-tool{{command="{value}"}})')
    if not steps:
        return None
    pipeline = f"builtin.module(iree-hal-device-assignment-pipeline,iree-hal-configuration-pipeline,{','.join(steps)})"
    options = [f for f in flags if f.startswith(("--iree-hal-", "--iree-llvmcpu-", "--iree-codegen-"))
               and not f.startswith(PREPROCESS)]
    return [opt, str(stream), *options, f"--pass-pipeline={pipeline}", "-o", str(stream.with_name(CONFIGURED))]


CONFIGURED = "configured.mlir"
