"""Does the board's IREE runtime run this compiler's modules? Asked by running one.

A version string can be missing, or equal while the build differs (a runtime built from
another commit than the compiler's release): the probe module (runtimes/probe_model.py),
compiled now for the board's target and run there against PyTorch's output, is the answer.
"""
from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import numpy as np

from ..bench.run import max_abs_error, tolerance
from ..errors import BelaIreeError, BoardError
from ..pipeline import cache
from ..pipeline.compile import CompileOptions, CompileResult, compile_model
from ..pipeline.targets import Target
from ..runtimes.build import runtime_cache_root
from .connection import Board
from .remote_run import run_on_board

PROBE_MODEL = Path(__file__).resolve().parents[1] / "runtimes" / "probe_model.py"


async def compile_probe(target: Target) -> CompileResult:
    out = runtime_cache_root() / "probes" / f"{target.name}-{cache.iree_version()}"
    return await asyncio.to_thread(compile_model, PROBE_MODEL, CompileOptions(target, variant="default"), out)


async def probe_runtime(board: Board, target: Target) -> dict:
    """Runs the probe on the board: {"max_abs_err", "tolerance"}; a BoardError when it cannot."""
    compiled = await compile_probe(target)
    folder = compiled.folder
    work = (await board.run("mktemp -d /tmp/bela-iree-probe.XXXXXX")).strip()
    try:
        output, _ = await run_on_board(board, folder, work)
    finally:
        if board.online:
            await board.run(f"rm -rf {shlex.quote(work)}", check=False)
    expected = np.load(folder / "expected.npy")
    error = max_abs_error(output, folder) if output.size == expected.size else float("inf")
    if not error <= tolerance(expected):
        raise BoardError(f"the board's IREE runtime runs the probe module wrongly (max error {error:g})")
    return {"max_abs_err": error, "tolerance": tolerance(expected)}


async def require_runtime(board: Board, target: Target) -> None:
    """Before anything runs: the tools exist, and they run a module of this compiler correctly."""
    if board.runtime_checked == target.name:
        return
    await board.require_tools()
    theirs, ours = await board.runtime_version(), cache.iree_version()
    try:
        await probe_runtime(board, target)
    except BelaIreeError as e:
        raise BoardError(f"the board's IREE runtime ({theirs or 'version unknown'}) cannot run modules of this "
                         f"compiler ({ours}): {e.message}",
                         hint=f"install the matching runtime: bela-iree board setup {board.address} "
                              f"--target {target.name}") from None
    board.runtime_checked = target.name
