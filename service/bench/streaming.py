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
STREAM_OUTPUT = "stream_out.bin"


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


def stream_arguments(folder: Path, work: Path, module: str, there: str | None = None) -> list[str]:
    """The test program's arguments feeding `module` stream.npz's blocks in turn. The blocks are
    written into work; the program finds them (and writes its output) under `there`: work itself
    here, the folder they are uploaded to on a board. The blocks' files are stream*.bin."""
    there = str(work) if there is None else there
    with np.load(folder / STREAM_FILE) as stream:
        inputs = [stream[f"input{i}"].astype(np.float32) for i in range(len(stream.files) - 1)]
    blocks = inputs[0].shape[0]
    for index, value in enumerate(inputs):
        value.tofile(work / f"stream{index}.bin")
    more = [arg for index, value in enumerate(inputs[1:], 1)
            for arg in ("--more-input", f"{there}/stream{index}.bin:{'x'.join(map(str, value.shape[1:]))}")]
    return ["--input", f"{there}/stream0.bin", *more, "--blocks", str(blocks),
            "--output", f"{there}/{STREAM_OUTPUT}", "--output-sizes", ",".join(map(str, output_sizes(folder))),
            module, str(blocks), *map(str, inputs[0].shape[1:])]


def stream_output(folder: Path, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The program's output file as (its outputs, PyTorch's), each (K, *output shape)."""
    with np.load(folder / STREAM_FILE) as stream:
        expected = stream["expected"]
    return np.fromfile(path, dtype=np.float32).reshape(expected.shape), expected


def streaming_program(compiled: CompileResult, target: Target, work: Path) -> tuple[Path, str | None]:
    """The test program for target, built in work, and the module it is given (None: the vmfb;
    "-": an EmitC module, linked into the program)."""
    if compiled.format == "emitc":
        return emitc_program(compiled.folder, target, work), "-"
    return vmfb_program(target, work), None


def compare_stream(output: np.ndarray, expected: np.ndarray, ran_on: str) -> dict:
    """{"blocks": K, "max_abs_err", "per_block", "tolerance", "within_tolerance", "ran_on"}."""
    errors = np.abs(output - expected).reshape(len(expected), -1).max(axis=1)
    limit = tolerance(expected)
    return {"blocks": len(expected), "max_abs_err": float(errors.max()), "per_block": [float(e) for e in errors],
            "tolerance": limit, "within_tolerance": bool(errors.max() <= limit), "reference": "torch, state carried",
            "ran_on": ran_on}


def measure_streaming(compiled: CompileResult, target: Target) -> dict:
    """K blocks in one context, where the target runs on this machine, against PyTorch fed the
    same blocks, state carried (compare_stream's dict)."""
    folder = compiled.folder
    native = target.arch == "x86_64"
    with tempfile.TemporaryDirectory(prefix="bela-iree-stream-") as tmp:
        work = Path(tmp)
        program, module = streaming_program(compiled, target, work)
        command = [str(program)] if native else [*emulator(target), str(program)]
        argv = [*command, *stream_arguments(folder, work, module or str(folder / "model.vmfb"))]
        run_checked(argv, STREAM_TIMEOUT, "streaming the model failed")
        output, expected = stream_output(folder, work / STREAM_OUTPUT)
    return compare_stream(output, expected, "host" if native else "emulator")


def run_stream(command: list[str], folder: Path, work: Path, module: str,
               options: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Feeds the compiled module stream.npz's blocks in turn (command: the test program, after any
    emulator; options: more of its options); returns (its outputs, PyTorch's), each (K, *output shape)."""
    run_checked([*command, *options, *stream_arguments(folder, work, module)], STREAM_TIMEOUT,
                "streaming the model failed")
    return stream_output(folder, work / STREAM_OUTPUT)
