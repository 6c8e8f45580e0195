"""The rebuild loop's promises, in milliseconds: the Builder with stand-in steps.

The steps (build_steps.py: export, compile, benchmark, tune) are stand-ins here, and so is the
warm export worker; everything else is real: the Builder, its worker thread, its cancel flag,
run_tool killing a real process, the SQLite history. The real steps are what test_service.py
drives through the real service.
"""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from service.builder import DEBOUNCE_SECONDS, Builder
from service.errors import BelaIreeError, CompileError
from service.history import History
from service.layout import MODEL_DIR
from service.pipeline.compile import CompileResult
from service.pipeline.tools import run_tool

LONG = 30.0   # a tool that would run this long, unless the builder kills it


class StandInExporter:
    def start(self): pass
    def stop(self): pass
    def export(self, *args): raise AssertionError("stand-in steps never export")


class Steps:
    """Stand-in steps: each build runs `plan[n]` (a blocking function) in the builder's thread
    and writes its artifact like a real build swaps its folder in."""
    where = "here"

    def __init__(self, project: Path, plan: dict | None = None, tune=None):
        self.project, self.plan, self.tune_plan = project, plan or {}, tune
        self.builds = 0
        self.log: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def _note(self, what: str, n: int) -> None:
        with self.lock:
            self.log.append((what, n))

    async def build(self, run, project, options, on_stage, build_id=None):
        self.builds += 1
        n = self.builds

        def blocking():
            self._note("start", n)
            on_stage("compiling")
            try:
                self.plan.get(n, lambda: None)()
                artifact = self.project / MODEL_DIR / "model.vmfb"
                artifact.parent.mkdir(parents=True, exist_ok=True)
                artifact.write_text(f"build {n}")
                return CompileResult(model="m", target=options.target.name, format="vmfb", backend="llvm-cpu",
                                     artifacts=(artifact,), flags=(), seconds={"export": 0, "compile": 0},
                                     cached=False, export={})
            finally:
                self._note("end", n)
        return await run(blocking)

    async def bench(self, run, compiled, quick):
        return None

    async def tune(self, run, model_file, options, announce):
        if self.tune_plan is None:
            return None
        announce("measuring variants")
        return await run(self.tune_plan)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "model.py").write_text("x = 1\n")
    return tmp_path


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the builder")
        await asyncio.sleep(0.005)


def sleep_tool(started: list) -> None:
    """A real external process that would run LONG seconds: only a kill ends it sooner."""
    started.append(time.monotonic())
    run_tool(["sleep", str(LONG)], timeout=LONG + 5)


class Loop:
    """A Builder with stand-in steps, its messages and its history."""

    def __init__(self, project: Path, steps: Steps):
        self.messages: list[dict] = []
        self.history = History(project / "history.sqlite")
        self.builder = Builder(project, self.messages.append, self.history, steps, target="host",
                               exporter=StandInExporter())

    def states(self, build_id: int) -> list[str]:
        return [m["state"] for m in self.messages if m["type"] == "build" and m["id"] == build_id]

    def finished(self, build_id: int) -> bool:
        return any(s in ("done", "failed", "cancelled") for s in self.states(build_id))

    async def idle(self) -> None:
        await wait_until(lambda: self.builder.task is not None and self.builder.task.done())

    async def close(self) -> None:
        await self.builder.stop()
        self.history.close()


async def test_a_burst_of_saves_makes_one_build(project):
    steps = Steps(project)
    loop = Loop(project, steps)
    try:
        for _ in range(5):   # an editor's save: write, rename, touch...
            loop.builder.file_changed(project / "model.py")
            await asyncio.sleep(DEBOUNCE_SECONDS / 10)
        await wait_until(lambda: loop.builder.task is not None)
        await loop.idle()
        assert steps.builds == 1
        assert loop.states(1)[-1] == "done"
        loop.builder.file_changed(project / "model.py")   # saved again, unchanged: no build
        await wait_until(lambda: any(m["type"] == "unchanged" for m in loop.messages))
        assert steps.builds == 1 and len(loop.history.builds(10)) == 1
    finally:
        await loop.close()


async def test_a_newer_save_cancels_the_running_build(project):
    started: list[float] = []
    steps = Steps(project, plan={1: lambda: sleep_tool(started)})
    loop = Loop(project, steps)
    try:
        loop.builder.request("first save")
        await wait_until(lambda: started)
        loop.builder.request("second save")
        await wait_until(lambda: loop.finished(2))
        assert loop.states(1)[-1] == "cancelled"
        assert loop.states(2)[-1] == "done"
        assert (project / MODEL_DIR / "model.vmfb").read_text() == "build 2"
        assert [b["state"] for b in loop.history.builds(10)] == ["done", "cancelled"]
    finally:
        await loop.close()


async def test_an_old_result_never_replaces_a_newer_one(project):
    def stubborn():   # a step that does not notice it was cancelled, and finishes late
        time.sleep(0.3)
    steps = Steps(project, plan={1: stubborn})
    loop = Loop(project, steps)
    try:
        loop.builder.request("first save")
        await wait_until(lambda: ("start", 1) in steps.log)
        loop.builder.request("second save")
        await wait_until(lambda: loop.finished(2))
        await loop.idle()
        assert steps.log.index(("end", 1)) < steps.log.index(("start", 2))   # never overlapping
        assert "done" not in loop.states(1)
        assert (project / MODEL_DIR / "model.vmfb").read_text() == "build 2"
    finally:
        await loop.close()


async def test_a_failed_build_keeps_the_last_good_artifact(project):
    def broken():
        raise CompileError("'torch.aten.frobnicate' is not supported", file=str(project / "model.py"), line=7,
                           hint="replace the op")
    steps = Steps(project, plan={2: broken})
    loop = Loop(project, steps)
    try:
        loop.builder.request("first save")
        await wait_until(lambda: loop.finished(1))
        loop.builder.request("second save")
        await wait_until(lambda: loop.finished(2))
        failed = next(m for m in loop.messages if m["type"] == "build" and m["state"] == "failed")
        assert failed["error"]["line"] == 7 and failed["error"]["stage"] == "compile"
        assert (project / MODEL_DIR / "model.vmfb").read_text() == "build 1"
        assert [b["state"] for b in loop.history.builds(10)] == ["failed", "done"]
        assert any("the last good model stays" in m.get("line", "") for m in loop.messages)
    finally:
        await loop.close()


async def test_a_save_preempts_background_tuning(project):
    """The variants of the previous model are being measured (a loop over real processes, as
    bench/tuning.py does) when a new save lands: the save's build runs at once, the running
    tool is killed and that loop starts no further variant."""
    variants: list[int] = []    # which tuning run started each variant
    runs = iter(range(1, 100))

    def tune_every_variant():
        run = next(runs)
        for _ in range(3):
            try:
                variants.append(run)
                run_tool(["sleep", str(LONG)], timeout=LONG + 5)
            except BelaIreeError:   # as compile_variants does: a failed variant is skipped...
                continue
        return {"default": {"median_ms": 1.0}}

    steps = Steps(project, tune=tune_every_variant)
    loop = Loop(project, steps)
    try:
        loop.builder.request("first save")
        await wait_until(lambda: variants)
        assert loop.states(1)[-1] == "done"
        loop.builder.request("second save")
        await wait_until(lambda: loop.finished(2))   # within seconds, not LONG: the save came first
        assert loop.states(2)[-1] == "done"
        await wait_until(lambda: 2 in variants)      # the second model's own tuning began...
        assert variants.count(1) == 1                # ...and the first one's stopped (not skipped on)
        assert not any("flag variants:" in m.get("line", "") for m in loop.messages)
    finally:
        await loop.close()
