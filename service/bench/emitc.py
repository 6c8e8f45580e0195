"""`bench --format emitc`: the EmitC module itself, never the vmfb in its place.

The module and its kernels (runtimes/emitc.py's library) are linked into runtime/'s test
program (runtime/tests/run_model.c, which runs a model through bela_iree_model_run as the
generated glue does) for the target, and run where the target runs: natively on the host,
under qemu-user with the board's core for ARM (marked as emulated). Each call is timed inside
the program, around bela_iree_model_run.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BenchError
from ..pipeline.compile import CompileResult
from ..pipeline.targets import Target
from ..pipeline.tools import run_tool
from ..runtimes.build import RUNTIME_LIBRARY, ensure_runtime
from ..runtimes.emitc import LIBRARY, build_emitc_library, library_query_name
from ..runtimes.toolchain import toolchain_for
from .instruction_count import Cache, Counts, cached_counts, count_program, second_call
from .kernel_symbols import dispatch_range
from .measure import Measurement, repetitions_for
from .run import output_sizes
from .runtime_tools import emulator

RUN_TIMEOUT = 900.0


def run_checked(argv: list[str], timeout: float, failure: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run runtime/'s test program (natively or under qemu) through run_tool: a time limit, and
    killed with the build a newer save cancels. A failed run is `failure` and its first line."""
    result = run_tool(argv, timeout=timeout, stage="benchmarking", cwd=cwd)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise BenchError(f"{failure}: {lines[0][:300]}", detail=result.stderr[-4000:])
    return result


def emitc_program(folder: Path, target: Target, work: Path) -> Path:
    """runtime/'s test program with folder's EmitC module linked in, built for target in work."""
    built = folder / LIBRARY   # a project's generated/model has it already
    library = built if built.exists() else build_emitc_library(folder, target)
    install, _ = ensure_runtime(target.name)
    toolchain = toolchain_for(target)
    compilers = toolchain.compilers(work / "toolchain")
    argv = ["make", "-s", "-C", str(RUNTIME_LIBRARY), "test-program-emitc", f"IREE_RUNTIME_DIR={install.folder}",
            f"BUILD={work}", "LOADERS=static", f"CC={compilers['CC']}", f"AR={compilers['AR']}",
            f"EMITC_DIR={folder}", f"EMITC_OBJECTS={library}",
            f"EMITC_QUERY={library_query_name(folder / 'kernels.h')}"]
    result = run_tool(argv, timeout=600, stage="benchmarking")
    if result.returncode != 0:
        raise BenchError(f"the EmitC program for {target.name} did not build: {result.stderr.strip()[-300:]}",
                         detail=result.stderr[-4000:])
    return work / "run_emitc"


def program_arguments(folder: Path, work: Path, runs: int, *, reset_at: int = -1, timed: bool = True,
                      module: str = "-") -> list[str]:
    """runtime/'s test program's arguments for `runs` calls on a compile folder's reference inputs,
    which it writes into work; every file is named relative to work (the program runs there)."""
    with np.load(folder / "inputs.npz") as npz:
        inputs = [npz[name].astype(np.float32) for name in npz.files]
    for index, value in enumerate(inputs):
        value.tofile(work / f"input{index}.bin")
    more = [arg for index, value in enumerate(inputs[1:], 1)
            for arg in ("--more-input", f"input{index}.bin:{'x'.join(map(str, value.shape))}")]
    expected_size = np.load(folder / "expected.npy").size
    timing = ["--output", "out.bin", "--latencies", "latencies.txt"] if timed else []
    return ["--input", "input0.bin", *more, *timing, "--output-count", str(expected_size), "--reset-at", str(reset_at),
            "--output-sizes", ",".join(map(str, output_sizes(folder))), module, str(runs), *map(str, inputs[0].shape)]


def run_program(command: list[str], folder: Path, work: Path, runs: int, module: str = "-") -> tuple[np.ndarray, list[float]]:
    """Runs runtime/'s test program (command: the program, after any emulator) `runs` times on a
    compile folder's reference inputs: the last output, and each run's time in ms."""
    # the last run starts from the module's starting state (reset; nothing for a stateless model),
    # so its output is comparable with expected.npy, PyTorch's first call
    argv = [*command, *program_arguments(folder, work, runs, reset_at=runs - 1, module=module)]
    run_checked(argv, RUN_TIMEOUT, "the EmitC program failed", cwd=work)
    expected = np.load(folder / "expected.npy")
    output = np.fromfile(work / "out.bin", dtype=np.float32).reshape(expected.shape)
    latencies = [float(line) / 1000 for line in (work / "latencies.txt").read_text().split()]
    return output, latencies


def count_emitc_per_call(folder: Path, target: Target, board_cache: Cache) -> Counts:
    """One steady-state call's work of the EmitC program on target's emulated core (as
    instruction_count.count_per_call for a vmfb), cached per program and inputs."""
    with tempfile.TemporaryDirectory(prefix="bela-iree-emitc-count-") as tmp:
        work = Path(tmp)
        program = emitc_program(folder, target, work)
        kernels, names = dispatch_range(program, folder / "kernels.o")
        return cached_counts(
            [program.read_bytes(), (folder / "inputs.npz").read_bytes(), target.name, target.core, repr(board_cache),
             repr(kernels)],
            lambda: count_program(work, program, lambda calls: program_arguments(folder, work, calls, timed=False),
                                  target, board_cache, steady=second_call, static_kernels=kernels, symbols=names))


def measure_emitc(compiled: CompileResult, target: Target, seconds: float = 2.0,
                  repetitions: int | None = None) -> tuple[str, np.ndarray, Measurement]:
    """Where it ran (host|emulator), its output, and the timed calls."""
    folder = compiled.folder
    with tempfile.TemporaryDirectory(prefix="bela-iree-emitc-bench-") as tmp:
        work = Path(tmp)
        program = emitc_program(folder, target, work)
        native = target.arch == "x86_64"
        command = [str(program)] if native else [*emulator(target), str(program)]
        if repetitions is None:
            _, probe = run_program(command, folder, work, 3)
            repetitions = repetitions_for(sorted(probe)[1], seconds)
        output, latencies = run_program(command, folder, work, repetitions + 1)
    # the first call sets up what later calls reuse: as iree-benchmark-module's warm-up, not timed
    return ("host" if native else "emulator"), output, Measurement(latencies[1:], [], None)
