"""What the board's running program plays: the status file its auxiliary task keeps.

The program writes PROJECT/bela-iree-status.json (layout.STATUS_FILE; format in docs/design.md,
"The board's status file") atomically about once a second. `board status` and `serve --board`
read it over SSH: the newest such file under projects/ (or the named project's). It is `running`
when the file says so, its pid is alive on the board and it was updated within STALE_SECONDS of
the board's own clock (a program killed hard leaves a file that says running).
"""
from __future__ import annotations

import json
import shlex

from ..layout import STATUS_FILE, board_project_dir
from .connection import Board

STALE_SECONDS = 5.0
FIELDS = ("swaps", "overruns", "glue", "latency_samples")


async def board_status(board: Board, project: str | None = None) -> dict:
    """The `board status --json` object (plus "updated", "pid", "last_error", "file")."""
    root = board.require_root()
    q = shlex.quote
    if project:
        path = f"{board_project_dir(root, project)}/{STATUS_FILE}"
    else:
        path = (await board.run(f"ls -t {q(root)}/projects/*/{STATUS_FILE} 2>/dev/null | head -n 1",
                                check=False)).strip()
    report = {"address": str(board.address), "running": False, "project": project, "model": None,
              **{field: None for field in FIELDS}}
    text = await board.run(f"cat {q(path)} 2>/dev/null; echo; echo @@; date +%s", check=False) if path else "@@"
    body, _, clock = text.rpartition("@@")
    if not body.strip():
        return {**report, "message": f"no {STATUS_FILE} in {root}/projects/{project or '*'}: "
                                     "is a bela-iree project running?"}
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        return {**report, "message": f"{path} on {board.address} is not a status object"}
    pid = status.get("pid")
    alive = isinstance(pid, int) and pid > 0 and (
        await board.run(f"kill -0 {pid} 2>/dev/null && echo alive", check=False)).strip() == "alive"
    now = float(clock.strip() or 0)
    fresh = isinstance(status.get("updated"), (int, float)) and now - status["updated"] <= STALE_SECONDS
    model = status.get("model") if isinstance(status.get("model"), dict) else {}
    return {**report, "running": bool(status.get("running")) and alive and fresh,
            "project": status.get("project") or project or path.split("/")[-2],
            "model": {key: model.get(key) for key in ("build", "sha256", "since")},
            **{field: status.get(field) for field in FIELDS},
            "updated": status.get("updated"), "pid": pid, "last_error": status.get("last_error"), "file": path}
