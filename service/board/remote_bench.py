"""Benchmarking on the board: the same bench JSON as on the host, marked "ran_on": "board"."""
from __future__ import annotations

import asyncio
import shlex

from ..bench.bench import add_glue, bench_result, is_inline
from ..bench.estimate import add_estimate
from ..project import glue_setting
from ..bench.measure import BENCH_TIMEOUT, Measurement, benchmark_argv, parse_benchmark, repetitions_for
from ..bench.streaming import is_stateful
from ..errors import BenchError
from ..pipeline.compile import CompileResult
from ..pipeline.targets import TARGETS
from .connection import Board
from .remote_run import run_on_board
from .remote_streaming import streaming_on_board
from .runtime_check import require_runtime


async def benchmark_on_board(board: Board, module: str, inputs: list[str], repetitions: int,
                             dispatches: bool) -> Measurement:
    """iree-benchmark-module on the board, `repetitions` calls of the module there."""
    q = shlex.quote
    argv = ["--module_mode=mmap", *benchmark_argv(module, inputs, repetitions, dispatches)]   # see module_mode
    prefix = " ".join(q(p) for p in board.tools_prefix)
    command = f"{prefix} {q(board.tools)}/iree-benchmark-module {' '.join(q(a) for a in argv)}"
    result = await board.run_result(command.strip(), timeout=BENCH_TIMEOUT)
    if result.exit_status != 0:
        raise BenchError(f"iree-benchmark-module failed on the board: {result.stderr.strip()[-300:]}")
    return parse_benchmark(result.stdout, result.stderr)


async def bench_on_board(board: Board, compiled: CompileResult, seconds: float = 2.0,
                         block_size: int | None = None, sample_rate: int | None = None, estimate: bool = True) -> dict:
    """Measured on the board (and a stateful model streamed there); with `estimate`, the board model's estimate and their ratio beside it."""
    await require_runtime(board, TARGETS[compiled.target])
    folder = compiled.folder
    work = (await board.run("mktemp -d /tmp/bela-iree-bench.XXXXXX")).strip()
    try:
        output, names = await run_on_board(board, folder, work)
        module = f"{work}/model.vmfb"
        probe = await benchmark_on_board(board, module, names, 3, False)
        # the inline HAL has no device to time dispatches on (bench.is_inline)
        measured = await benchmark_on_board(board, module, names, repetitions_for(probe.summary()["median"], seconds),
                                            not is_inline(compiled))
        streaming = await streaming_on_board(board, compiled, work) if is_stateful(compiled) else None
    finally:
        if board.online:
            await board.run(f"rm -rf {shlex.quote(work)}", check=False)
    result = bench_result(compiled, "board", output, measured, block_size, sample_rate)
    if streaming:   # a stateful model: K blocks in a row on the board, against PyTorch's
        result["streaming"], result["state"] = streaming, compiled.export["state"]
    if not estimate:
        return add_glue(result, *glue_setting(compiled))
    # the estimate beside the measurement (counted under qemu here: a thread, seconds)
    return add_glue(await asyncio.to_thread(add_estimate, result, folder, TARGETS[compiled.target]),
                    *glue_setting(compiled))
