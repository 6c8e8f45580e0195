"""Benchmarking on the board: the same bench JSON as on the host, marked "ran_on": "board"."""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import numpy as np

from ..bench.bench import bench_result
from ..bench.measure import benchmark_argv, parse_benchmark, repetitions_for
from ..bench.run import input_files
from ..errors import BenchError, BoardError
from ..pipeline.compile import CompileResult
from .connection import Board


async def bench_on_board(board: Board, compiled: CompileResult, seconds: float = 2.0,
                         block_size: int | None = None, sample_rate: int | None = None) -> dict:
    await board.require_runtime()
    folder = compiled.artifacts[0].parent
    work = (await board.run("mktemp -d /tmp/bela-iree-bench.XXXXXX")).strip()
    q = shlex.quote
    try:
        with tempfile.TemporaryDirectory() as tmp:
            names = []
            for path in input_files(folder, Path(tmp)):
                await board.put_atomic(path, f"{work}/{path.name}")
                names.append(f"{work}/{path.name}")
            await board.put_atomic(folder / "model.vmfb", f"{work}/model.vmfb")
            prefix = " ".join(q(p) for p in board.tools_prefix)
            run = f"{prefix} {q(board.tools)}/iree-run-module --module={work}/model.vmfb --device=local-sync " \
                  f"--function=main {' '.join('--input=@' + n for n in names)} --output=@{work}/output.npy"
            await board.run(run.strip())
            await board.get(f"{work}/output.npy", Path(tmp) / "output.npy")
            output = np.load(Path(tmp) / "output.npy")

            async def benchmark(repetitions: int, dispatches: bool):
                argv = benchmark_argv(f"{work}/model.vmfb", names, repetitions, dispatches)
                command = f"{prefix} {q(board.tools)}/iree-benchmark-module {' '.join(q(a) for a in argv)}"
                result = await board.connection.run(command.strip(), check=False)
                if result.exit_status != 0:
                    raise BenchError(f"iree-benchmark-module failed on the board: {result.stderr.strip()[-300:]}")
                return parse_benchmark(result.stdout, result.stderr)

            probe = await benchmark(3, False)
            measured = await benchmark(repetitions_for(probe.summary()["median"], seconds), True)
    except BoardError:
        raise
    finally:
        if board.online:
            await board.run(f"rm -rf {q(work)}", check=False)
    return bench_result(compiled, "board", output, measured, block_size, sample_rate)
