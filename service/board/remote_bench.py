"""Benchmarking on the board: the same bench JSON as on the host, marked "ran_on": "board"."""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import numpy as np

from ..bench.bench import bench_result
from ..bench.measure import Measurement, benchmark_argv, parse_benchmark, repetitions_for
from ..bench.run import input_files
from ..errors import BenchError
from ..pipeline.compile import CompileResult
from .connection import Board


async def upload_inputs(board: Board, folder: Path, work: str, tmp: Path) -> list[str]:
    """The model's example inputs (from a compile folder) into the board's `work` folder."""
    names = []
    for path in input_files(folder, tmp):
        await board.put_atomic(path, f"{work}/{path.name}")
        names.append(f"{work}/{path.name}")
    return names


async def benchmark_on_board(board: Board, module: str, inputs: list[str], repetitions: int,
                             dispatches: bool) -> Measurement:
    """iree-benchmark-module on the board, `repetitions` calls of the module there."""
    q = shlex.quote
    argv = benchmark_argv(module, inputs, repetitions, dispatches)
    prefix = " ".join(q(p) for p in board.tools_prefix)
    command = f"{prefix} {q(board.tools)}/iree-benchmark-module {' '.join(q(a) for a in argv)}"
    result = await board.connection.run(command.strip(), check=False)
    if result.exit_status != 0:
        raise BenchError(f"iree-benchmark-module failed on the board: {result.stderr.strip()[-300:]}")
    return parse_benchmark(result.stdout, result.stderr)


async def bench_on_board(board: Board, compiled: CompileResult, seconds: float = 2.0,
                         block_size: int | None = None, sample_rate: int | None = None) -> dict:
    await board.require_runtime()
    folder = compiled.artifacts[0].parent
    work = (await board.run("mktemp -d /tmp/bela-iree-bench.XXXXXX")).strip()
    q = shlex.quote
    try:
        with tempfile.TemporaryDirectory() as tmp:
            names = await upload_inputs(board, folder, work, Path(tmp))
            await board.put_atomic(folder / "model.vmfb", f"{work}/model.vmfb")
            prefix = " ".join(q(p) for p in board.tools_prefix)
            run = f"{prefix} {q(board.tools)}/iree-run-module --module={work}/model.vmfb --device=local-sync " \
                  f"--function=main {' '.join('--input=@' + n for n in names)} --output=@{work}/output.npy"
            await board.run(run.strip())
            await board.get(f"{work}/output.npy", Path(tmp) / "output.npy")
            output = np.load(Path(tmp) / "output.npy")
            probe = await benchmark_on_board(board, f"{work}/model.vmfb", names, 3, False)
            measured = await benchmark_on_board(board, f"{work}/model.vmfb", names,
                                                repetitions_for(probe.summary()["median"], seconds), True)
    finally:
        if board.online:
            await board.run(f"rm -rf {q(work)}", check=False)
    return bench_result(compiled, "board", output, measured, block_size, sample_rate)
