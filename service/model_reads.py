"""Which files a model file reads while it loads (weights, captures, JSON, TorchScript).

They are part of the model: the export records them with their sha256 (export.json "reads"),
the export cache keys on their contents, and `serve` watches them, so overwriting weights.pt
rebuilds. Python's audit hook sees every `open` (torch.load, numpy.load, json, NAM's loader);
torch.jit.load reads in C++, so it is wrapped while a load runs. Counted: files under the
model's folder, and files opened outside it while the model file's own code is on the stack
(`torch.load("/data/run3/weights.pt")`), never Python sources (their syntax trees are
fingerprinted already) nor the interpreter's own library files.
"""
from __future__ import annotations

import hashlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .layout import GENERATED

_IGNORED_PARTS = {GENERATED, "__pycache__", ".git"}
_SOURCE_SUFFIXES = {".py", ".pyc"}
_hook_installed = False
_active: "ReadRecorder | None" = None   # the load in progress (one at a time in a process)


class ReadRecorder:
    def __init__(self, model_file: Path):
        self.folder = model_file.resolve().parent
        self.folders = {str(self.folder), str(model_file.absolute().parent)}   # through a symlink or not
        self.paths: list[Path] = []
        self._libraries = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})

    def saw(self, file, mode, flags) -> None:
        if isinstance(file, int) or file is None or _writes(mode, flags):
            return
        path = Path(os.path.abspath(os.fsdecode(file)))
        if path.suffix in _SOURCE_SUFFIXES or path in self.paths or path.is_dir():
            return
        if self._inside(path) or (self._called_by_model() and not self._library(path)):
            self.paths.append(path)

    def _inside(self, path: Path) -> bool:
        for folder in self.folders:
            if path.is_relative_to(folder):
                parts = path.relative_to(folder).parts
                return not any(p in _IGNORED_PARTS or p.startswith(".") for p in parts[:-1])
        return False

    def _called_by_model(self) -> bool:
        frame = sys._getframe(2)
        while frame:
            if os.path.dirname(frame.f_code.co_filename) in self.folders:
                return True
            frame = frame.f_back
        return False

    def _library(self, path: Path) -> bool:
        text = os.path.realpath(path)
        return text.startswith(self._libraries) or text.startswith(("/proc/", "/sys/", "/dev/"))

    def reads(self) -> list[dict]:
        """Each file read, in order: its path (relative to the model's folder when inside it)
        and sha256 as it is now, None when it is missing."""
        return [{"path": display_path(p, self.folder), "sha256": file_sha256(p)} for p in self.paths]


def _writes(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax")
    return bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _active is not None:
        recorder = _active
        try:
            recorder.saw(*args)
        except Exception:   # an audit hook must never break the model's own open()
            pass


@contextmanager
def recording(model_file: Path):
    """Record the files read inside this block (loading `model_file`)."""
    global _active, _hook_installed
    if not _hook_installed:   # audit hooks cannot be removed: one for the life of the process
        sys.addaudithook(_audit)
        _hook_installed = True
    recorder = ReadRecorder(model_file)
    previous, _active = _active, recorder
    restore = _wrap_jit_load(recorder)
    try:
        yield recorder
    finally:
        _active = previous
        restore()


def _wrap_jit_load(recorder: ReadRecorder):
    """torch.jit.load opens its file in C++, unseen by the audit hook: note the path it is given."""
    import torch.jit

    original = torch.jit.load

    def load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            recorder.saw(f, "rb", 0)
        return original(f, *args, **kwargs)
    torch.jit.load = load

    def restore():
        torch.jit.load = original
    return restore


def display_path(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def absolute(reads: list[dict], model_file: Path) -> dict[Path, str | None]:
    """export.json's reads as {absolute path: sha256}."""
    folder = model_file.resolve().parent
    return {(folder / r["path"]).resolve(): r.get("sha256") for r in reads or []}
