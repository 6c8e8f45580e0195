"""Streaming proof for a stateful model: K consecutive blocks through the compiled module, in one
context as render() runs them, against PyTorch fed the same blocks with its state carried.

The blocks and PyTorch's outputs come from export (stream.npz, pipeline/stream_reference.py).
The module runs through runtime/'s own library (tests/run_model.c --blocks, over
bela_iree_model_run), built for the target and run where the target runs: natively, or under
qemu-user with the board's core. A vmfb gets the test program; EmitC the same program with the
module linked in (emitc.py). iree-run-module cannot do this: it makes one call per process.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import BenchError
from ..pipeline.compile import CompileResult
from ..pipeline.stream_reference import STREAM_FILE
from ..pipeline.targets import Target
from ..pipeline.tools import run_tool
from ..runtimes.build import RUNTIME_LIBRARY, ensure_runtime
from ..runtimes.toolchain import toolchain_for
from .emitc import emitc_program, run_checked
from .run import output_sizes, tolerance
from .runtime_tools import emulator

STREAM_TIMEOUT = 600.0


def is_stateful(compiled: CompileResult) -> bool:
    return bool(compiled.export.get("state")) and (compiled.folder / STREAM_FILE).exists()


def vmfb_program(target: Target, work: Path) -> Path:
    """runtime/'s test program for target (its loader for a vmfb: system on armv7, embedded elsewhere)."""
    install, _ = ensure_runtime(target.name)
    compilers = toolchain_for(target).compilers(work / "toolchain")
    loaders = "system" if target.arch == "armv7" else "embedded"
    argv = ["make", "-s", "-C", str(RUNTIME_LIBRARY), "test-program", f"IREE_RUNTIME_DIR={install.folder}",
            f"BUILD={work}", f"LOADERS={loaders}", f"CC={compilers['CC']}", f"AR={compilers['AR']}"]
    result = run_tool(argv, timeout=600, stage="benchmarking")
    if result.returncode != 0:
        raise BenchError(f"the streaming test program for {target.name} did not build: {result.stderr.strip()[-300:]}",
                         detail=result.stderr[-4000:])
    return work / "run_model"


def run_stream(command: list[str], folder: Path, work: Path, module: str,
               options: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Feeds the compiled module stream.npz's blocks in turn (command: the test program, after any
    emulator; options: more of its options); returns (its outputs, PyTorch's), each (K, *output shape)."""
    with np.load(folder / STREAM_FILE) as stream:
        expected = stream["expected"]
        inputs = [stream[f"input{i}"].astype(np.float32) for i in range(len(stream.files) - 1)]
    blocks = expected.shape[0]
    for index, value in enumerate(inputs):
        value.tofile(work / f"stream{index}.bin")
    more = [arg for index, value in enumerate(inputs[1:], 1)
            for arg in ("--more-input", f"{work / f'stream{index}.bin'}:{'x'.join(map(str, value.shape[1:]))}")]
    argv = [*command, "--input", str(work / "stream0.bin"), *more, "--blocks", str(blocks), *options,
            "--output", str(work / "stream_out.bin"), "--output-sizes", ",".join(map(str, output_sizes(folder))),
            module, str(blocks), *map(str, inputs[0].shape[1:])]
    run_checked(argv, STREAM_TIMEOUT, "streaming the model failed")
    output = np.fromfile(work / "stream_out.bin", dtype=np.float32).reshape(expected.shape)
    return output, expected


def measure_streaming(compiled: CompileResult, target: Target) -> dict:
    """{"blocks": K, "max_abs_err", "per_block", "tolerance", "within_tolerance"}: K blocks in one
    context against PyTorch fed the same blocks, state carried."""
    folder = compiled.folder
    with tempfile.TemporaryDirectory(prefix="bela-iree-stream-") as tmp:
        work = Path(tmp)
        if compiled.format == "emitc":
            program, module = emitc_program(folder, target, work), "-"
        else:
            program, module = vmfb_program(target, work), str(folder / "model.vmfb")
        command = [str(program)] if target.arch == "x86_64" else [*emulator(target), str(program)]
        output, expected = run_stream(command, folder, work, module)
    errors = np.abs(output - expected).reshape(len(expected), -1).max(axis=1)
    limit = tolerance(expected)
    return {"blocks": len(expected), "max_abs_err": float(errors.max()), "per_block": [float(e) for e in errors],
            "tolerance": limit, "within_tolerance": bool(errors.max() <= limit), "reference": "torch, state carried"}
