"""A stateful model's streaming check on the board: bench's K consecutive blocks in one context
(bench/streaming.py), with the test program built here for the board's target, sent with the
blocks, run there, and its output fetched back to compare with PyTorch's (state carried)."""
from __future__ import annotations

import asyncio
import shlex
import tempfile
from pathlib import Path

from ..bench.streaming import (STREAM_OUTPUT, STREAM_TIMEOUT, compare_stream, stream_arguments, stream_output,
                               streaming_program)
from ..errors import BenchError
from ..pipeline.compile import CompileResult
from ..pipeline.targets import TARGETS
from .connection import Board


async def streaming_on_board(board: Board, compiled: CompileResult, work: str) -> dict:
    """The streaming check run in the board's `work` folder, which holds model.vmfb already."""
    q = shlex.quote
    folder = compiled.folder
    with tempfile.TemporaryDirectory(prefix="bela-iree-board-stream-") as tmp:
        local = Path(tmp)
        # the cross build takes seconds: off the event loop (serve keeps talking to the panel)
        program, module = await asyncio.to_thread(streaming_program, compiled, TARGETS[compiled.target], local)
        arguments = stream_arguments(folder, local, module or f"{work}/model.vmfb", there=work)
        for path in [program, *sorted(local.glob("stream*.bin"))]:
            await board.put_atomic(path, f"{work}/{path.name}")
        await board.run(f"chmod +x {q(work)}/{q(program.name)}")
        prefix = " ".join(q(p) for p in board.tools_prefix)
        command = f"{prefix} {q(work)}/{q(program.name)} {' '.join(q(a) for a in arguments)}"
        result = await board.run_result(command.strip(), timeout=STREAM_TIMEOUT)
        if result.exit_status != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit status {result.exit_status}"]
            raise BenchError(f"streaming the model failed on the board: {lines[0][:300]}",
                             detail=(result.stderr or "")[-4000:])
        await board.get(f"{work}/{STREAM_OUTPUT}", local / STREAM_OUTPUT)
        output, expected = stream_output(folder, local / STREAM_OUTPUT)
    return compare_stream(output, expected, "board")
