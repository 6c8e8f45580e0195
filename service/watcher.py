"""Watching a project: which saves matter, and whether a save changed the model at all.

The watchdog callback (its own thread) only hands the path to the event loop; debouncing and
deciding happen there. A save "changes the model" when the fingerprint changes: the syntax
trees of the project's Python files (so comments and whitespace do not count), the parsed
bela-iree.toml, and the bytes of every data file the model file read while it loaded
(weights.pt, a .nam capture, model.jit: model_reads.py; the builder says which, after each
build, and the watcher then reacts to them too, inside the project or not). A file that does
not parse counts by its bytes, so a broken save still builds and reports the error.
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


def fingerprint(project: Path, data_files: dict | None = None) -> str:
    """`data_files`: {path: sha256 or None (missing)} of the files the model reads."""
    digest = hashlib.sha256()
    for path in source_files(project):
        try:
            text = path.read_text()
        except OSError:
            continue  # deleted between listing and reading: the next event will tell
        digest.update(str(path.relative_to(project)).encode() + b"\0")
        digest.update(_meaning(path, text).encode() + b"\0")
    for path, sha in sorted((data_files or {}).items()):
        digest.update(f"data\0{path}\0{sha or 'missing'}\0".encode())
    return digest.hexdigest()


def _meaning(path: Path, text: str) -> str:
    try:
        if path.suffix == ".py":
            return ast.dump(ast.parse(text), include_attributes=False)
        return json.dumps(tomllib.loads(text), sort_keys=True)
    except (SyntaxError, ValueError):
        return text


class _Forward(FileSystemEventHandler):
    def __init__(self, project: Path, loop: asyncio.AbstractEventLoop, callback, data_files: set):
        self.project, self.loop, self.callback, self.data_files = project, loop, callback, data_files

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or event.is_directory:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and (relevant(self.project, Path(raw)) or Path(raw).resolve() in self.data_files):
                self.loop.call_soon_threadsafe(self.callback, Path(raw))


class ProjectWatcher:
    """Calls `callback(path)` on the event loop for every relevant change in the project."""

    def __init__(self, project: Path, callback):
        self.project = project
        self.callback = callback
        self.observer = Observer()
        self.data_files: set[Path] = set()     # read by the model file (swapped whole: read by the thread)
        self.folders: set[Path] = set()        # watched folders outside the project

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.handler = _Forward(self.project, loop, self.callback, self.data_files)
        self.observer.schedule(self.handler, str(self.project), recursive=True)
        self.observer.start()

    def watch_files(self, paths) -> None:
        """Also react to these files (the data the model file read), wherever they are."""
        self.handler.data_files = self.data_files = {Path(p).resolve() for p in paths}
        for folder in {p.parent for p in self.data_files} - self.folders:
            if folder.is_dir() and not folder.is_relative_to(self.project.resolve()):
                self.observer.schedule(self.handler, str(folder), recursive=False)
                self.folders.add(folder)

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
