"""Content-addressed caches for exports and compiles.

An export is keyed by the model's source (its file and the .py files beside it), the
bela-iree pipeline code, the torch/turbine versions, and the contents of the files the model
file read when it was last exported (weights, captures: model_reads.py); a compile by the
exported MLIR, the flags and the IREE version. Entries are written to a temporary folder and renamed into place,
so a crash never leaves a half entry behind. BELA_IREE_CACHE moves the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("BELA_IREE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bela-iree"
    return Path(root)


def iree_version() -> str:
    return metadata.version("iree-base-compiler")


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def export_key(model_file: Path, variant: str = "") -> str:
    pipeline = Path(__file__).parent
    exporting = [pipeline / "export.py", pipeline / "state.py", pipeline / "stream_reference.py",
                 pipeline / "routing.py", pipeline / "decompose.py", pipeline / "lowerable.py",
                 pipeline / "export_errors.py", pipeline / "block_size.py", pipeline.parent / "torchscript.py",
                 pipeline.parent / "model_reads.py",
                 *sorted((pipeline / "rewrites").rglob("*.py")),   # every module of the rewrites
                 pipeline.parent / "modelfile.py"]
    sources = sorted(model_file.parent.glob("*.py")) + exporting
    # a model may take its block from the project's settings (a NAM capture's model.py does)
    sources += [p for p in [model_file.parent / "bela-iree.toml"] if p.exists()]
    versions = [metadata.version(p) for p in ("torch", "iree-turbine", "iree-base-compiler")]
    return digest(str(model_file.name), variant, *versions, *(p.name.encode() + p.read_bytes() for p in sources))


def with_reads(source_key: str, reads: dict) -> str:
    """The export's key: its source's key and each file it read ({path: sha256 or None})."""
    return digest(source_key, *(f"{path}\0{sha or 'missing'}" for path, sha in sorted(reads.items())))


def compile_key(mlir: bytes, flags: list[str]) -> str:
    return digest(mlir, "\0".join(flags), iree_version())


class Cache:
    def __init__(self, kind: str):
        self.folder = cache_root() / kind

    def get(self, key: str) -> Path | None:
        entry = self.folder / key
        return entry if entry.is_dir() else None

    def known_reads(self, source_key: str) -> list[str] | None:
        """The files the model read the last time this source was exported (None: never)."""
        try:
            return json.loads((self.folder / f"{source_key}.reads.json").read_text())
        except (OSError, ValueError):
            return None

    def remember_reads(self, source_key: str, paths: list[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.folder, prefix=f".{source_key}.", delete=False) as tmp:
            json.dump(paths, tmp)
        os.replace(tmp.name, self.folder / f"{source_key}.reads.json")

    def put(self, key: str, source: Path, move: bool = False) -> Path:
        """Put a finished folder into the cache atomically; returns the entry. `move`: source's
        files are moved, not copied (a rebuild's folder of megabytes of weights, on the same disk:
        renames), leaving source empty."""
        entry = self.folder / key
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{key}."))
        if move:
            for item in source.iterdir():
                shutil.move(item, staging / item.name)   # a rename on the same file system
        else:
            shutil.rmtree(staging)
            shutil.copytree(source, staging)
        try:
            os.rename(staging, entry)
        except OSError:  # another process cached the same key first: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
        return entry


def publish(source: Path, destination: Path, names: list[str]) -> list[Path]:
    """Copy files into destination, each replaced atomically (temp file + rename)."""
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        target = destination / name
        with tempfile.NamedTemporaryFile(dir=destination, prefix=f".{name}.", delete=False) as tmp:
            with open(source / name, "rb") as f:
                shutil.copyfileobj(f, tmp)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
        written.append(target)
    return written
