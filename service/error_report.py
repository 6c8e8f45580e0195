"""A failure as the terminal shows it: one line (what, file:line), the hint, and where the log is.

The error's text is the user's and the compiler's (MLIR types like `!torch.vtensor<[1,8],f32>`,
tensors printed with brackets), so it is printed as plain text: never read as rich markup, never
wrapped. The full diagnostic goes to a log file, not the terminal.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

from .errors import BelaIreeError


def log_path() -> Path:
    from .pipeline.cache import cache_root
    return cache_root() / "logs" / "last-error.log"


def write_log(error: BelaIreeError) -> Path | None:
    """The error's full diagnostic, in the log file (replaced on every failure)."""
    if not error.detail:
        return None
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{error.where()}{error.message}\n\n{error.detail}\n")
    return path


def print_error(console: Console, error: BelaIreeError) -> None:
    headline = Text("error", style="red")
    headline.append(f" ({error.stage}): {error.where()}{error.message}", style=None)
    console.print(headline, soft_wrap=True, highlight=False)
    if error.hint:
        console.print(Text(f"  hint: {error.hint}"), soft_wrap=True, highlight=False)
    log = write_log(error)
    if log:
        console.print(Text(f"  full diagnostic: {log}"), soft_wrap=True, highlight=False)
