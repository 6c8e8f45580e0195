"""The websocket messages, in one place (contract: docs/design.md, "Websocket protocol").

Service -> panel: hello, history, build, bench, cpu, log, unchanged, error.
Panel -> service: rebuild, set_target (validated by `parse_request`; anything else gets an
`error` reply and the connection stays open).
"""
from __future__ import annotations

import json
import time

from . import __version__

BUILD_STATES = ("queued", "exporting", "compiling", "benchmarking", "done", "failed", "cancelled")
MAX_MESSAGE_BYTES = 64 * 1024


def hello(project: str, target: str, targets: list[str], board: str | None) -> dict:
    return {"type": "hello", "version": __version__, "project": project, "target": target,
            "targets": targets, "board": board}


def history(builds: list[dict]) -> dict:
    return {"type": "history", "builds": builds}


def build(build_id: int, state: str, target: str, stages: dict, error: dict | None = None, **extra) -> dict:
    assert state in BUILD_STATES, state
    message = {"type": "build", "id": build_id, "state": state, "target": target, "stages": stages, "t": time.time()}
    if error:
        message["error"] = error
    message.update(extra)
    return message


def bench(build_id: int, result: dict) -> dict:
    return {"type": "bench", "build_id": build_id, **result}


def cpu(percent: float, source: str, msw: int | None = None, **extra) -> dict:
    message = {"type": "cpu", "t": time.time(), "percent": percent, "source": source}
    if msw is not None:
        message["msw"] = msw
    message.update(extra)
    return message


def log(build_id: int | None, line: str) -> dict:
    return {"type": "log", "build_id": build_id, "line": line}


def unchanged(files: list[str], seconds: float) -> dict:
    return {"type": "unchanged", "files": files, "seconds": seconds}


def error(message: str) -> dict:
    return {"type": "error", "message": message}


class BadRequest(ValueError):
    pass


def parse_request(text: str, targets: list[str]) -> dict:
    """A panel's message, checked: {"type": "rebuild"} or {"type": "set_target", "target": T}."""
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise BadRequest("message too large")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"not JSON: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadRequest('messages are JSON objects with a "type"')
    kind = message["type"]
    if kind == "rebuild":
        return {"type": "rebuild"}
    if kind == "set_target":
        if message.get("target") not in targets:
            raise BadRequest(f"unknown target {message.get('target')!r}; use one of {', '.join(targets)}")
        return {"type": "set_target", "target": message["target"]}
    raise BadRequest(f"unknown message type {kind!r}")
