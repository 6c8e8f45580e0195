"""The rebuild loop of `bela-iree serve`: debounce saves, skip no-op saves, cancel stale
builds, run export -> compile -> glue -> benchmark, and report every step.

It knows nothing about HTTP: it is handed `publish(message)` and a History. The blocking
pipeline runs in a worker thread; every external process it starts is registered (through
tools.process_started) so a stale build can be stopped by killing them. Builds never overlap:
a new build waits for the cancelled one's thread to finish, so an old result can never be
swapped in after a newer one.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import time
from pathlib import Path

from . import events
from .errors import BelaIreeError
from .history import History
from .pipeline.targets import TARGETS, get_target
from .pipeline.tools import process_started
from .project import MODEL_DIR, ProjectConfig, rebuild
from .watcher import fingerprint
from .worker import WarmExporter

DEBOUNCE_SECONDS = 0.05   # editors save in bursts (write temp, rename, touch)
QUICK_CALLS = 20          # the first latency figure of a build: a few calls, right away
BENCH_SECONDS = 1.0       # then a fuller measurement, after `done`, unless a newer build starts


class Builder:
    def __init__(self, project: Path, publish, history: History, target: str | None = None,
                 export_timeout: float = 60.0, compile_timeout: float = 120.0, bench_runner=None,
                 tune: bool = True):
        self.project = project
        self.publish = publish
        self.history = history
        config = ProjectConfig.load(project) if (project / "bela-iree.toml").exists() else ProjectConfig(target="host")
        self.target = target or config.target
        self.format = config.format
        self.exporter = WarmExporter()
        self.export_timeout = export_timeout
        self.compile_timeout = compile_timeout
        self.bench_runner = bench_runner   # the board's, once connected; None: host or emulator
        self.tune = tune                   # measure flag variants once per model (bench/tuning.py)
        self.board_tuner = None            # ...on the board, once connected (BoardSession.tune)
        self.built_fingerprint: str | None = None
        self.processes: set = set()
        self.task: asyncio.Task | None = None
        self.thread_done: asyncio.Future | None = None
        self._debounce: asyncio.TimerHandle | None = None
        self.current_id: int | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.exporter.start)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.exporter.stop()

    # ---- triggers -----------------------------------------------------------------------------

    def file_changed(self, path: Path) -> None:
        """From the watcher: wait for the burst of writes to end, then decide."""
        if self._debounce:
            self._debounce.cancel()
        self._debounce = asyncio.get_running_loop().call_later(DEBOUNCE_SECONDS, self._settled, path)

    def _settled(self, path: Path) -> None:
        started = time.perf_counter()
        if fingerprint(self.project) == self.built_fingerprint:
            self.publish(events.unchanged([path.name], round(time.perf_counter() - started, 4)))
            self.publish(events.log(None, f"{path.name} saved without a change to the model: no rebuild"))
            return
        self.request(f"{path.name} changed")

    def request(self, reason: str, target: str | None = None) -> None:
        """Start a build now, cancelling a stale one (a save, a panel's rebuild or set_target)."""
        if target:
            self.target = get_target(target).name
        if self.task and not self.task.done():
            self.task.cancel()
        previous = self.task
        self.task = asyncio.get_running_loop().create_task(self._build(reason, previous))

    # ---- one build ----------------------------------------------------------------------------

    async def _build(self, reason: str, previous: asyncio.Task | None) -> None:
        if previous:
            await asyncio.gather(previous, return_exceptions=True)
        if self.thread_done:
            await asyncio.gather(self.thread_done, return_exceptions=True)
        self.built_fingerprint = fingerprint(self.project)
        target = self.target
        build_id = self.history.start(target, self.format, reason)
        self.current_id = build_id
        stages: dict[str, float] = {}
        clock = {"stage": "queued", "since": time.perf_counter()}
        loop = asyncio.get_running_loop()

        def enter(stage: str) -> None:  # called from the build thread, or the loop
            now = time.perf_counter()
            stages[clock["stage"]] = round(now - clock["since"], 3)
            clock.update(stage=stage, since=now)
            self.history.update(build_id, state=stage, stages=stages)
            loop.call_soon_threadsafe(self.publish, events.build(build_id, stage, target, dict(stages)))

        finished = False
        self.publish(events.build(build_id, "queued", target, {}, reason=reason))
        self.publish(events.log(build_id, f"build {build_id} for {target}: {reason}"))
        try:
            result, compiled = await self._in_thread(
                rebuild, self.project, target, self.compile_timeout, exporter=self.exporter.export,
                on_stage=enter, export_timeout=self.export_timeout)
            self.history.update(build_id, flags=result["flags"])
            for warning in result["warnings"]:
                self.publish(events.log(build_id, f"warning: {warning}"))
            self.publish(events.log(build_id, f"compiled in {result['seconds']['compile']:.2f} s"
                                              f"{' (cached)' if result['cached'] else ''}: {', '.join(Path(a).name for a in result['artifacts'])}"))
            enter("benchmarking")
            bench = await self._bench(compiled, target, quick=True)
            if bench:
                self._bench_measured(build_id, bench, compiled.variant, "quick")
            enter("done")
            finished = True
            if bench and not self.bench_runner:
                # a fuller figure (more calls: a real p99) while the user reads the first one
                bench = await self._bench(compiled, target, quick=False)
                self._bench_measured(build_id, bench, compiled.variant, "full")
            if self.tune:
                try:
                    await self._tune(build_id, compiled, target)
                except BelaIreeError as e:  # the build is done and stays good: only say why
                    self.publish(events.log(build_id, f"measuring the flag variants failed: {e}"))
        except asyncio.CancelledError:
            self._kill_processes()
            if not finished:  # after `done` only the fuller measurement is dropped
                self.history.update(build_id, state="cancelled", stages=stages)
                self.publish(events.build(build_id, "cancelled", target, dict(stages)))
            raise
        except BelaIreeError as e:
            self._failed(build_id, target, stages, e.to_json())
            self.publish(events.log(build_id, f"failed ({e.stage}): {e}"))
            for line in (e.detail or "").strip().splitlines()[-30:]:
                self.publish(events.log(build_id, line))
            self.publish(events.log(build_id, f"the last good model stays in {MODEL_DIR}/"))
        except Exception as e:  # a bug of ours: report it like any failure and keep serving
            self._failed(build_id, target, stages,
                         {"stage": clock["stage"], "message": f"internal error: {type(e).__name__}: {e}"})

    def _failed(self, build_id: int, target: str, stages: dict, error: dict) -> None:
        """A failed build, recorded and told: the error with its stage, file, line and hint."""
        self.history.update(build_id, state="failed", stages=stages, error=error)
        self.publish(events.build(build_id, "failed", target, dict(stages), error=error))

    def _bench_measured(self, build_id: int, bench: dict, variant: str, phase: str) -> None:
        """A build's latency figure (quick, then full), recorded and told, with the fit verdict
        worded here once (bench/bench.py) for the panel."""
        from .bench.bench import fit_verdict
        bench["variant"], bench["verdict"] = variant, fit_verdict(bench)
        self.history.update(build_id, bench=bench)
        self.publish(events.bench(build_id, {**bench, "phase": phase}))

    async def _tune(self, build_id: int, compiled, target: str) -> None:
        """Once per model and target, after the build is done: measure the flag variants and,
        if one beats the flags this build used, build again with it."""
        from .bench.tuning import needs_tuning, tune
        from .pipeline.variants import describe, fastest
        model_file, target_info = self.project / "model.py", TARGETS[target]
        on_board = self.bench_runner is not None
        if on_board and self.board_tuner is None:
            return
        if not await self._in_thread(needs_tuning, model_file, target_info, self.format, compiled.backend,
                                     on_board=on_board, exporter=self.exporter.export):
            return
        where = "on the board" if on_board else "here"
        self.publish(events.log(build_id, f"measuring IREE flag variants for this model {where} (once per model and target)"))
        options = {"exporter": self.exporter.export, "timeout": self.compile_timeout, "export_timeout": self.export_timeout}
        if on_board:
            table = await self.board_tuner(model_file, target_info, compiled.backend, **options)
        else:
            table = await self._in_thread(tune, model_file, target_info, compiled.backend, **options)
        best = fastest(table)
        self.publish(events.log(build_id, f"flag variants: {describe(table)} -> {best}"))
        if best != compiled.variant:
            # after this task has finished, so the new build does not cancel it
            asyncio.get_running_loop().call_soon(self.request, f"faster flags measured: {best}")

    async def _bench(self, compiled, target: str, quick: bool) -> dict | None:
        from .bench.bench import bench_compiled
        target_info = TARGETS[target]
        if self.bench_runner:
            return await self.bench_runner(compiled, target_info)
        if quick:
            return await self._in_thread(bench_compiled, compiled, target_info, repetitions=QUICK_CALLS)
        return await self._in_thread(bench_compiled, compiled, target_info, seconds=BENCH_SECONDS)

    async def _in_thread(self, function, *args, **kwargs):
        """Run a blocking pipeline step in a thread whose child processes we can kill."""
        context = contextvars.copy_context()
        context.run(process_started.set, lambda process: self.processes.add(process))
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, lambda: context.run(function, *args, **kwargs))
        self.thread_done = future
        try:
            return await asyncio.shield(future)
        finally:
            self.processes = {p for p in self.processes if p.poll() is None}

    def _kill_processes(self) -> None:
        for process in list(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.processes.clear()
