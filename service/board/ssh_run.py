"""Build and run (or stop) a project over SSH with Bela's own Makefile, when no Bela IDE answers.

The same make calls as the IDE's, with the same arguments from the project's settings.json:
`make -C ROOT all PROJECT=NAME CL=... <make flags>` (its output streamed, its errors parsed),
then `make -C ROOT run ...` started detached from our SSH session (setsid, output to
PROJECT/.bela-iree-run.log) so that the program keeps playing after we disconnect. `stop` is
`make -C ROOT stop`.
"""
from __future__ import annotations

import asyncio
import json
import shlex

from ..layout import board_project_dir
from .compiler_errors import compiler_errors, failure_errors
from .connection import Board

BUILD_TIMEOUT = 600.0
RUN_LOG = ".bela-iree-run.log"
START_CHECKS, START_INTERVAL = 8, 0.25   # the program must still run after this long to be "playing"


def make_arguments(settings: dict) -> list[str]:
    """The `CL=...` and extra make arguments the Bela IDE derives from a project's settings.json
    (IDE/src/ProjectSettings.ts getArgs)."""
    options = settings.get("CLArgs") or {}
    words = []
    for key, value in options.items():
        if key.startswith("--"):
            if key != "--disable-led" or value in (1, "1"):
                words.append(key if key == "--disable-led" else f"{key}={value}")
        elif key == "user":
            words.append(str(value))
        elif key not in ("make", "audioExpander") and value != "":
            words.append(f"{key}{value}")
    make = options.get("make")
    extra = [arg.strip() for arg in make.split(";") if arg.strip()] if isinstance(make, str) else []
    return [f"CL={' '.join(w for w in words if w).strip()}", *extra]


async def _project_arguments(board: Board, project_dir: str) -> list[str]:
    text = await board.run(f"cat {shlex.quote(project_dir)}/settings.json 2>/dev/null", check=False)
    try:
        return make_arguments(json.loads(text))
    except ValueError:
        return ["CL="]


async def ssh_run(board: Board, project: str, on_line=None) -> dict:
    """`board run` over SSH: the `board run --json` object, via "ssh"."""
    root = board.require_root()
    project_dir = board_project_dir(root, project)
    q = shlex.quote
    make = f"make --no-print-directory -C {q(root)}"
    arguments = " ".join(q(a) for a in [f"PROJECT={project}", *await _project_arguments(board, project_dir)])
    result = {"project": project, "via": "ssh", "errors": []}
    status, output = await board.stream(f"{make} all {arguments}", on_line or (lambda line: None), BUILD_TIMEOUT)
    if status != 0:
        return {**result, "state": "build_failed", "errors": failure_errors(output, project)}
    pid = (await board.run(f"setsid nohup {make} run {arguments} > {q(project_dir)}/{RUN_LOG} 2>&1 "
                           f"< /dev/null & echo $!")).strip()
    for _ in range(START_CHECKS):
        await asyncio.sleep(START_INTERVAL)
        if (await board.run(f"kill -0 {q(pid)} 2>/dev/null && echo alive", check=False)).strip() != "alive":
            log = await board.run(f"tail -n 30 {q(project_dir)}/{RUN_LOG}", check=False)
            return {**result, "state": "stopped",
                    "errors": compiler_errors(log, project) or failure_errors(log, project, "the program exited")}
    return {**result, "state": "playing"}


async def ssh_stop(board: Board, project: str) -> dict:
    root = board.require_root()
    await board.run(f"make --no-print-directory -C {shlex.quote(root)} stop", check=False)
    return {"project": project, "state": "stopped", "via": "ssh", "errors": []}
