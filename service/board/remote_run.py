"""Running a compiled model on the board once: its inputs sent, its output fetched."""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import numpy as np

from ..bench.run import input_files
from .connection import Board


async def upload_inputs(board: Board, folder: Path, work: str, tmp: Path) -> list[str]:
    """The model's example inputs (from a compile folder) into the board's `work` folder."""
    names = []
    for path in input_files(folder, tmp):
        await board.put_atomic(path, f"{work}/{path.name}")
        names.append(f"{work}/{path.name}")
    return names


async def run_on_board(board: Board, folder: Path, work: str) -> tuple[np.ndarray, list[str]]:
    """A compile folder's model.vmfb and reference inputs, sent into the board's `work` folder
    and run once there: the output, and the inputs' paths on the board."""
    q = shlex.quote
    with tempfile.TemporaryDirectory() as tmp:
        names = await upload_inputs(board, folder, work, Path(tmp))
        await board.put_atomic(folder / "model.vmfb", f"{work}/model.vmfb")
        prefix = " ".join(q(p) for p in board.tools_prefix)
        run = f"{prefix} {q(board.tools)}/iree-run-module --module_mode=mmap --module={work}/model.vmfb --device=local-sync " \
              f"--function=main {' '.join('--input=@' + n for n in names)} --output=@{work}/output.npy"
        await board.run(run.strip())
        await board.get(f"{work}/output.npy", Path(tmp) / "output.npy")
        return np.load(Path(tmp) / "output.npy"), names
