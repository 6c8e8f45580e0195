"""Watching a project: which saves matter, and whether a save changed the model at all.

The watchdog callback (its own thread) only hands the path to the event loop; debouncing and
deciding happen there. A save "changes the model" when the fingerprint changes: the syntax
trees of the project's Python files (so comments and whitespace do not count) and the parsed
bela-iree.toml. A file that does not parse counts by its bytes, so a broken save still builds
and reports the error.
"""
from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import tomllib
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .layout import CONFIG, GENERATED

IGNORED_PARTS = {GENERATED, "build", "__pycache__", ".git"}


def relevant(project: Path, path: Path) -> bool:
    try:
        parts = path.resolve().relative_to(project.resolve()).parts
    except ValueError:
        return False
    if not parts or any(p in IGNORED_PARTS or p.startswith(".") for p in parts):
        return False
    return path.suffix == ".py" or path.name == CONFIG


def source_files(project: Path) -> list[Path]:
    files = [p for p in project.rglob("*.py") if relevant(project, p)]
    if (project / CONFIG).exists():
        files.append(project / CONFIG)
    return sorted(files)


def fingerprint(project: Path) -> str:
    digest = hashlib.sha256()
    for path in source_files(project):
        try:
            text = path.read_text()
        except OSError:
            continue  # deleted between listing and reading: the next event will tell
        digest.update(str(path.relative_to(project)).encode() + b"\0")
        digest.update(_meaning(path, text).encode() + b"\0")
    return digest.hexdigest()


def _meaning(path: Path, text: str) -> str:
    try:
        if path.suffix == ".py":
            return ast.dump(ast.parse(text), include_attributes=False)
        return json.dumps(tomllib.loads(text), sort_keys=True)
    except (SyntaxError, ValueError):
        return text


class _Forward(FileSystemEventHandler):
    def __init__(self, project: Path, loop: asyncio.AbstractEventLoop, callback):
        self.project, self.loop, self.callback = project, loop, callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or event.is_directory:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and relevant(self.project, Path(raw)):
                self.loop.call_soon_threadsafe(self.callback, Path(raw))


class ProjectWatcher:
    """Calls `callback(path)` on the event loop for every relevant change in the project."""

    def __init__(self, project: Path, callback):
        self.project = project
        self.callback = callback
        self.observer = Observer()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.observer.schedule(_Forward(self.project, loop, self.callback), str(self.project), recursive=True)
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
