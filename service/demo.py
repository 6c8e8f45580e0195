"""`make demo`: the zoo's basic_mlp compiled for every board, then a live project served.

Prints a table of the compile for each target, creates `demo-project/` from the zoo unless it
exists, and serves it: open the printed URL, edit demo-project/model.py, and watch the build and
the figures move. The project targets Bela, because the question its users ask is whether the
model fits on their Bela: without a board the verdict is the estimate from instructions counted
on the emulated Cortex-A8 (the emulator's wall time is shown apart). The panel's target menu
switches to this computer (`host`) in one click.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import BelaIreeError
from .pipeline.compile import CompileOptions, compile_model
from .pipeline.targets import TARGETS
from .project import new_project
from .server import serve
from zoo import model_path

DEMO_MODEL = "basic_mlp"
DEMO_PROJECT = Path("demo-project")
DEMO_TARGET = "bela"


def compile_table(console: Console) -> Table:
    table = Table("target", "board", "artifact", "size", "export s", "compile s", title=f"{DEMO_MODEL} for every board")
    for target in TARGETS.values():
        with console.status(f"compiling {DEMO_MODEL} for {target.name}"):
            try:
                result = compile_model(model_path(DEMO_MODEL), CompileOptions(target),
                                       Path("build") / f"{DEMO_MODEL}-{target.name}")
                artifact = result.artifacts[0]
                table.add_row(target.name, target.board, str(artifact), f"{artifact.stat().st_size / 1e6:.1f} MB",
                              f"{result.seconds['export']:.2f}", f"{result.seconds['compile']:.2f}")
            except BelaIreeError as e:
                table.add_row(target.name, target.board, f"[red]{e.message}[/]", "", "", "")
    return table


def main() -> int:
    console = Console(stderr=True)
    console.print(compile_table(console))
    if not DEMO_PROJECT.exists():
        with console.status(f"creating {DEMO_PROJECT}/ from the zoo's {DEMO_MODEL}"):
            new_project(DEMO_PROJECT, DEMO_MODEL, "vmfb", DEMO_TARGET)

    def ready(url: str, ide: str | None) -> None:
        console.print(f"\n[green]demo running[/]: open [bold]{url}[/] and edit {DEMO_PROJECT}/model.py "
                      "(try a layer size): each save rebuilds and re-estimates it on Bela; the target menu switches to "
                      "this computer. Ctrl-C stops.", highlight=False)
        print(url, flush=True)

    asyncio.run(serve(DEMO_PROJECT, ready=ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
