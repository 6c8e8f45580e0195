"""The model zoo: the ten architectures of the Bela-IREE paper, seeded, each a model file.

Every model lives in `zoo/models/NAME.py` and follows the model file contract (it defines
`model` and `example_input`), so `bela-iree new --model NAME` can hand the file to the user
as their own `model.py`. docs/design.md ("The model zoo") gives the published sizes.
"""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"


def names() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.py") if not p.stem.startswith("_"))


def model_path(name: str) -> Path:
    path = MODELS_DIR / f"{name}.py"
    if not path.exists():
        raise KeyError(f"no zoo model {name!r}; the zoo has: {', '.join(names())}")
    return path.resolve()


def summary(name: str) -> str:
    """The first paragraph of the model file's docstring, on one line."""
    import ast
    doc = ast.get_docstring(ast.parse(model_path(name).read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())
