"""What one rebuild of `serve` does at each step, on this computer or with a board: handed to
the Builder at construction, so the loop itself (builder.py) is tested with stand-ins.

Every step is `async` and gets `run(function, *args)`, which runs a blocking function in the
builder's worker thread, where a newer save can stop it (its processes killed, its loops
cancelled at the next tool they would start).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .pipeline.compile import CompileOptions, CompileResult
from .pipeline.targets import TARGETS

QUICK_CALLS = 20          # the first latency figure of a build: a few calls, right away
BENCH_SECONDS = 1.0       # then a fuller measurement, after `done`, unless a newer build starts
TRADE_OFF_BLOCKS = (16, 32, 64, 128)   # then the block sizes the panel plots (Bela's usual periods)


class HostSteps:
    """Build here, measure here (natively, or under qemu for ARM targets), tune here (host)."""
    where = "here"

    def __init__(self, tune: bool = True):
        self.tuning = tune   # measure flag variants once per model (bench/tuning.py)

    async def build(self, run, project: Path, options: CompileOptions, on_stage, build_id: int | None = None) -> CompileResult:
        from .project import build_project
        return await run(build_project, project, options, on_stage, build_id)

    async def bench(self, run, compiled: CompileResult, quick: bool) -> dict | None:
        """The quick figure, or the fuller one (None: this step has none)."""
        from .bench.bench import bench_compiled
        from .project import glue_setting
        target = TARGETS[compiled.target]
        period, glue = glue_setting(compiled)   # the project's period and glue setting
        if quick:   # the board estimate (counting the work under qemu) waits for the fuller figure
            return await run(bench_compiled, compiled, target, repetitions=QUICK_CALLS, estimate=False,
                             period=period, glue=glue)
        return await run(bench_compiled, compiled, target, seconds=BENCH_SECONDS, period=period, glue=glue)

    async def blocks(self, run, model_file: Path, options: CompileOptions) -> tuple[list[dict], str | None] | None:
        """The latency / CPU trade-off at TRADE_OFF_BLOCKS (bench/blocks.py), for the panel's chart;
        None with --no-tune (background measuring off: one build, one figure)."""
        if not self.tuning:
            return None
        from .bench.blocks import bench_blocks
        with tempfile.TemporaryDirectory(prefix="bela-iree-blocks-") as tmp:
            return await run(bench_blocks, model_file, options.but(variant="default"), Path(tmp), list(TRADE_OFF_BLOCKS))

    async def tune(self, run, model_file: Path, options: CompileOptions, announce) -> dict | None:
        """The flag variants' table if it had to be measured now; None if there was nothing to do."""
        from .bench import tuning
        if not self.tuning or not await run(tuning.needs_tuning, model_file, options, self.where != "here"):
            return None
        announce(f"measuring IREE flag variants for this model {self.where} (once per model and target)")
        return await self._measure(run, model_file, options)

    async def _measure(self, run, model_file: Path, options: CompileOptions) -> dict:
        from .bench.tuning import tune
        return await run(tune, model_file, options)


class BoardSteps(HostSteps):
    """Build here, deploy to the board and measure there, tune there (board/session.py)."""
    where = "on the board"

    def __init__(self, session, tune: bool = True):
        super().__init__(tune)
        self.session = session
        self.measured: dict | None = None

    async def bench(self, run, compiled: CompileResult, quick: bool) -> dict | None:
        """Quick: deployed and measured on the board (half a second of calls). Full: the same
        figure with the board model's estimate beside it (the work counted under qemu here)."""
        if quick:
            self.measured = await self.session.deploy_and_bench(compiled, TARGETS[compiled.target])
            return self.measured
        from .bench.bench import add_glue
        from .bench.estimate import add_estimate
        from .project import glue_setting
        estimated = await run(add_estimate, dict(self.measured), compiled.folder, TARGETS[compiled.target])
        return add_glue(estimated, *glue_setting(compiled))

    async def _measure(self, run, model_file: Path, options: CompileOptions) -> dict:
        return await self.session.tune(model_file, options)
