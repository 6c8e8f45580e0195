"""The rebuild loop of `serve`: debounce saves, skip no-op saves, cancel stale work, run the
build -> benchmark -> tune steps, and report every step.

It knows nothing about HTTP: it is handed `publish(message)`, a History, and its steps
(build_steps.py: this computer's, or a board's). Blocking steps run in a worker thread whose
external processes are registered (tools.process_started) and which sees a cancel flag
(tools.cancel_requested), so a newer save stops it at once: its tools are killed and its loops
stop at the next tool they would start. A save always comes first: background work after
`done` (the fuller measurement, the flag variants) is cancelled like a stale build, and the
variants are measured again the next time that model is built. Builds never overlap: a new
build waits for the cancelled one's thread to finish, so an old result can never be swapped in
after a newer one.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
import time
from pathlib import Path

from . import events, model_reads
from .errors import BelaIreeError
from .history import History
from .layout import CONFIG, MODEL_DIR, MODEL_FILE
from .pipeline.targets import get_target
from .pipeline.tools import cancel_requested, process_started
from .project import ProjectConfig
from .watcher import fingerprint
from .worker import WarmExporter

DEBOUNCE_SECONDS = 0.05       # editors save in bursts (write temp, rename, touch)
SERVE_EXPORT_TIMEOUT = 60.0   # a live loop gives up sooner than a one-shot command
SERVE_COMPILE_TIMEOUT = 120.0


class Builder:
    def __init__(self, project: Path, publish, history: History, steps, target: str | None = None,
                 export_timeout: float = SERVE_EXPORT_TIMEOUT, compile_timeout: float = SERVE_COMPILE_TIMEOUT,
                 exporter: WarmExporter | None = None):
        self.project = project
        self.publish = publish
        self.history = history
        self.steps = steps
        self.target_override = target   # the command line's or the panel's; else the project's
        self.limits = {"export_timeout": export_timeout, "compile_timeout": compile_timeout}
        self.exporter = exporter or WarmExporter()
        self.built_fingerprint: str | None = None
        self.data_files: set[Path] = set()          # what the model file read at its last load
        self.on_data_files = lambda paths: None     # the watcher's watch_files (server.py)
        self.blocks_measured: tuple | None = None   # ((model fingerprint, target), the trade-off measured)
        self.processes: set = set()
        self.cancel_event = threading.Event()
        self.task: asyncio.Task | None = None
        self.thread_done: asyncio.Future | None = None
        self._debounce: asyncio.TimerHandle | None = None
        self.current_id: int | None = None

    @property
    def config(self) -> ProjectConfig:
        # a folder without bela-iree.toml is tried on this computer
        return ProjectConfig.load(self.project) if (self.project / CONFIG).exists() else ProjectConfig(target="host")

    @property
    def target(self) -> str:
        if self.target_override:
            return self.target_override
        try:
            return self.config.target
        except BelaIreeError:   # a broken bela-iree.toml: the build reports it
            return "host"

    async def start(self) -> None:
        await asyncio.to_thread(self.exporter.start)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.thread_done:
            await asyncio.gather(self.thread_done, return_exceptions=True)
        self.exporter.stop()

    # ---- triggers -----------------------------------------------------------------------------

    def file_changed(self, path: Path) -> None:
        """From the watcher: wait for the burst of writes to end, then decide."""
        if self._debounce:
            self._debounce.cancel()
        self._debounce = asyncio.get_running_loop().call_later(DEBOUNCE_SECONDS, self._settled, path)

    def _settled(self, path: Path) -> None:
        started = time.perf_counter()
        if fingerprint(self.project, self._data_digests()) == self.built_fingerprint:
            self.publish(events.unchanged([path.name], round(time.perf_counter() - started, 4)))
            self.publish(events.log(None, f"{path.name} saved without a change to the model: no rebuild"))
            return
        self.request(f"{path.name} changed")

    def request(self, reason: str, target: str | None = None) -> None:
        """Start a build now, cancelling stale work (a save, a panel's rebuild or set_target)."""
        if target:
            self.target_override = get_target(target).name
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
        self.cancel_event = threading.Event()
        self.built_fingerprint = fingerprint(self.project, self._data_digests())
        target = self.target
        try:
            fmt = self.config.format
        except BelaIreeError:
            fmt = "vmfb"   # what the broken file meant is unknown; build_project says what is wrong
        build_id = self.history.start(target, fmt, reason)
        self.current_id = build_id
        stages: dict[str, float] = {}
        clock = {"stage": "queued", "since": time.perf_counter()}
        loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()

        def enter(stage: str) -> None:  # called from the build thread, or the loop
            now = time.perf_counter()
            stages[clock["stage"]] = round(now - clock["since"], 3)
            clock.update(stage=stage, since=now)
            self.history.update(build_id, state=stage, stages=stages)
            message = events.build(build_id, stage, target, dict(stages))
            if threading.get_ident() == loop_thread:   # told before this task can finish
                self.publish(message)
            else:
                loop.call_soon_threadsafe(self.publish, message)

        finished = False
        self.publish(events.build(build_id, "queued", target, {}, reason=reason))
        self.publish(events.log(build_id, f"build {build_id} for {target}: {reason}"))
        try:
            options = self.config.compile_options(target, exporter=self.exporter.export, **self.limits)
            compiled = await self.steps.build(self._in_thread, self.project, options, enter, build_id)
            self._loaded_with(compiled.export.get("reads") or [])
            self.history.update(build_id, flags=list(compiled.flags))
            for warning in compiled.warnings:
                self.publish(events.log(build_id, f"warning: {warning}"))
            self.publish(events.log(build_id, f"compiled in {compiled.seconds['compile']:.2f} s"
                                              f"{' (cached)' if compiled.cached else ''}: "
                                              f"{', '.join(a.name for a in compiled.artifacts)}"))
            enter("benchmarking")
            bench = await self.steps.bench(self._in_thread, compiled, True)
            if bench:
                self._bench_measured(build_id, bench, compiled.variant, "quick")
            enter("done")
            finished = True
            # background work: a newer save cancels it (see the module's docstring)
            fuller = await self.steps.bench(self._in_thread, compiled, False) if bench else None
            if fuller:   # more calls: a real p99, while the user reads the first figure
                self._bench_measured(build_id, fuller, compiled.variant, "full")
            if fuller or bench:
                await self._blocks(build_id, fuller or bench, options)
            await self._tune(build_id, compiled, options)
        except asyncio.CancelledError:
            self._cancel_work()
            if not finished:  # after `done` only background work is dropped
                self.history.update(build_id, state="cancelled", stages=stages)
                self.publish(events.build(build_id, "cancelled", target, dict(stages)))
            raise
        except BelaIreeError as e:
            if finished:   # the build is done and stays good: only say why the background work stopped
                self.publish(events.log(build_id, f"measuring after the build failed: {e}"))
                return
            if e.reads is not None:   # the model file loaded partly: watch what it read
                self._loaded_with(e.reads)
            self._failed(build_id, target, stages, e.to_json())
            self.publish(events.log(build_id, f"failed ({e.stage}): {e}"))
            for line in (e.detail or "").strip().splitlines()[-30:]:
                self.publish(events.log(build_id, line))
            self.publish(events.log(build_id, f"the last good model stays in {MODEL_DIR}/"))
        except Exception as e:  # a bug of ours: report it like any failure and keep serving
            self._failed(build_id, target, stages,
                         {"stage": clock["stage"], "message": f"internal error: {type(e).__name__}: {e}"})

    def _data_digests(self) -> dict[str, str | None]:
        return {str(p): model_reads.file_sha256(p) for p in self.data_files}

    def _loaded_with(self, reads: list[dict]) -> None:
        """The files this build's model file read (as it read them): watched from now on, and part
        of the fingerprint of what was built."""
        digests = model_reads.absolute(reads, self.project / MODEL_FILE)
        if set(digests) != self.data_files:
            self.data_files = set(digests)
            self.on_data_files(self.data_files)
        self.built_fingerprint = fingerprint(self.project, {str(p): sha for p, sha in digests.items()})

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

    async def _blocks(self, build_id: int, bench: dict, options) -> None:
        """The trade-off per block size (bench --blocks), as a bench message of phase "blocks".
        Measured with IREE's default flags, so a rebuild of the same model (faster flags found)
        gets the last figures again instead of measuring them again."""
        fingerprint = (self.built_fingerprint, options.target.name)
        if self.blocks_measured and self.blocks_measured[0] == fingerprint:
            found = self.blocks_measured[1]
        else:
            found = await self.steps.blocks(self._in_thread, self.project / MODEL_FILE, options)
            self.blocks_measured = (fingerprint, found)
        if found is None:
            return
        rows, why = found
        self.publish(events.bench(build_id, {**bench, "blocks": rows, "phase": "blocks",
                                             **({"blocks_note": f"fixed block: {why}"} if why else {})}))

    async def _tune(self, build_id: int, compiled, options) -> None:
        """Once per model and target, after the build is done: measure the flag variants and,
        if one beats the flags this build used, build again with it."""
        from .pipeline.variants import describe, fastest
        table = await self.steps.tune(self._in_thread, self.project / MODEL_FILE, options,
                                      lambda line: self.publish(events.log(build_id, line)))
        if table is None:
            return
        best = fastest(table)
        self.publish(events.log(build_id, f"flag variants: {describe(table)} -> {best}"))
        if best != compiled.variant:
            # after this task has finished, so the new build does not cancel it
            asyncio.get_running_loop().call_soon(self.request, f"faster flags measured: {best}")

    async def _in_thread(self, function, *args, **kwargs):
        """Run a blocking step in a thread whose child processes we can kill and whose loops
        see the cancel flag."""
        context = contextvars.copy_context()
        context.run(process_started.set, lambda process: self.processes.add(process))
        context.run(cancel_requested.set, self.cancel_event)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, lambda: context.run(function, *args, **kwargs))
        self.thread_done = future
        try:
            return await asyncio.shield(future)
        finally:
            self.processes = {p for p in self.processes if p.poll() is None}

    def _cancel_work(self) -> None:
        """Stop what the worker thread is doing: the flag first (so it starts nothing new), then
        its running tools."""
        self.cancel_event.set()
        for process in list(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.processes.clear()
