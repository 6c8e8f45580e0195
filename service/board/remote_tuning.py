"""Measuring pipeline/variants.py's flag sets on the board itself (bench/tuning.py does it on
the host): each variant's .vmfb is sent once, then timed there in turns with the others."""
from __future__ import annotations

import asyncio
import shlex
import tempfile
from pathlib import Path

from ..bench.tuning import compile_variants, measure_rounds, store_table, summarize
from ..pipeline.compile import CompileOptions, export_cached
from ..pipeline.variants import measured_table
from .connection import Board
from .remote_bench import benchmark_on_board
from .remote_run import upload_inputs
from .runtime_check import require_runtime


async def tune_on_board(board: Board, model_file: Path, options: CompileOptions) -> dict:
    """The variants' table for this model on this target, measured on `board` unless it was
    measured before; stored like the host's, so later builds use the winner."""
    target, backend = options.target, options.backend
    export_dir, _, _ = await asyncio.to_thread(export_cached, model_file, options.export_timeout,
                                               exporter=options.exporter)
    table = measured_table(export_dir, target, backend)
    if table is not None:
        return table
    await require_runtime(board, target)
    with tempfile.TemporaryDirectory(prefix="bela-iree-variants-") as tmp:
        compiled, table, timed_out = await asyncio.to_thread(compile_variants, model_file, options, Path(tmp))
        work = (await board.run("mktemp -d /tmp/bela-iree-tune.XXXXXX")).strip()
        try:
            inputs = await upload_inputs(board, next(iter(compiled.values())).folder, work,
                                         Path(tmp)) if compiled else []
            modules = {}
            for index, (name, result) in enumerate(compiled.items()):
                modules[name] = f"{work}/variant{index}.vmfb"
                await board.put_atomic(result.artifacts[0], modules[name])

            async def timer(name: str, calls: int) -> list[float]:
                return (await benchmark_on_board(board, modules[name], inputs, calls, False)).latencies_ms
            times, errors = await measure_rounds(list(compiled), timer)
        finally:
            if board.online:
                await board.run(f"rm -rf {shlex.quote(work)}", check=False)
    return store_table(export_dir, target, backend, {**table, **errors, **summarize(times)}, timed_out)
