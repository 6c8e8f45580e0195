"""The model.py that loads a capture: written into a project by `new --model capture.nam`, and
into the cache for a `.nam` given as MODEL to compile or bench (one file per capture content and
block size, so the pipeline's caches see a new capture as a new model)."""
from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import jinja2

from .capture import DEFAULT_BLOCK_SIZE, read_capture

TEMPLATES = Path(__file__).resolve().parents[2] / "project_templates" / "project"
TEMPLATE = "nam_model.py.j2"
CONFIG = "bela-iree.toml"


def project_block_size(folder: Path) -> int:
    """The project's block: bela-iree.toml's `period` (128 when the file or setting is absent)."""
    path = Path(folder) / CONFIG
    if not path.exists():
        return DEFAULT_BLOCK_SIZE
    try:
        return int(tomllib.loads(path.read_text()).get("period", DEFAULT_BLOCK_SIZE))
    except (tomllib.TOMLDecodeError, TypeError, ValueError):
        return DEFAULT_BLOCK_SIZE     # ProjectConfig.load reports a broken file on its own


def model_file_text(capture: Path, capture_expression: str, block_size_expression: str, block_note: str) -> str:
    header = read_capture(capture)    # refused here, before any file is written, if it cannot be imported
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template(TEMPLATE).render(
        name=capture.stem, architecture=header.architecture, version=header.version, sample_rate=header.sample_rate,
        capture_name=capture.name, capture_expression=capture_expression,
        block_size_expression=block_size_expression, block_note=block_note)


def write_project_model(capture: Path, project: Path, model_file: str = "model.py") -> Path:
    """Copies the capture into the project and writes the model.py that loads it from there."""
    text = model_file_text(capture, f'HERE / "{capture.name}"', "project_block_size(HERE)",
                           "The block size is bela-iree.toml's `period`.")
    (project / capture.name).write_bytes(capture.read_bytes())
    (project / model_file).write_text(text)
    return project / model_file


def cached_model_file(capture: Path, block_size: int | None, cache_root: Path) -> Path:
    """A model.py for a capture given as MODEL, in cache_root/nam/<digest>/<capture name>/."""
    capture = capture.resolve()
    block = block_size or DEFAULT_BLOCK_SIZE
    digest = hashlib.sha256(capture.read_bytes() + f"{capture}|{block}".encode()).hexdigest()[:16]
    folder = cache_root / "nam" / digest / capture.stem
    path = folder / "model.py"
    if not path.exists():
        text = model_file_text(capture, f"Path({str(capture)!r})", str(block),
                               f"Written by bela-iree for {capture.name} (sha256 {digest}), block {block}.")
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path
