"""Export the zoo (or some of it) to MLIR, ONNX and TorchScript, one child process per model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from service.pipeline.tools import run_tool

FORMATS = ("mlir", "onnx", "torchscript")
TIMEOUT = 600.0


def export_zoo(names: list[str], out: Path, formats: list[str], console: Console) -> dict[str, dict]:
    results: dict[str, dict] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("exporting", total=len(names))
        for name in names:
            progress.update(task, description=f"exporting {name}")
            results[name] = _export_one(name, out / name, formats)
            progress.advance(task)
    return results


def _export_one(name: str, out: Path, formats: list[str]) -> dict:
    try:
        result = run_tool([sys.executable, "-m", "zoo.export_one", name, str(out), ",".join(formats)],
                          timeout=TIMEOUT, stage="export", log=out / "export.log")
    except Exception as e:  # a timeout: every format of this model failed
        return {fmt: {"error": str(e).splitlines()[0]} for fmt in formats}
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        reason = f"exporter process died (exit code {result.returncode}); see {out / 'export.log'}"
        return {fmt: {"error": reason} for fmt in formats}


def summary_table(results: dict[str, dict], formats: list[str]) -> Table:
    table = Table(title="zoo export")
    table.add_column("model")
    for fmt in formats:
        table.add_column(fmt)
    for name, row in results.items():
        table.add_row(name, *[("[green]ok[/]" if "path" in row[fmt] else f"[red]{row[fmt]['error']}[/]") for fmt in formats])
    return table
