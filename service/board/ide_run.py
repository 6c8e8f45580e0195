"""Build and run (or stop) a project through the Bela IDE's own socket.io, as its Run and Stop
buttons do (IDE/src/SocketManager.ts, ProcessManager.ts in the Bela repository).

The IDE speaks socket.io 2.x (Engine.IO 3), hence python-socketio 4.x (pyproject.toml). On its
namespace /IDE we send `process-event` {event: "run"|"stop", currentProject}. The IDE then
broadcasts `status` objects: {building: true, buildProject} when `make all` starts,
{buildLog} chunks of make's stdout, {building: false, syntaxError: the build's stderr} when it
ends, and, when the build succeeded, {running: true, runProject} once `make runide` started the
program ({running: false} when it ends). A packet sent before the IDE has accepted the namespace
is dropped by socket.io 2.x, so nothing is sent before the namespace's `connect`.
"""
from __future__ import annotations

import asyncio

import socketio

from ..errors import BoardError
from .compiler_errors import compiler_errors, failure_errors

NAMESPACE = "/IDE"
CONNECT_TIMEOUT = 5.0
BUILD_TIMEOUT = 600.0          # a render.cpp with the IREE runtime takes a while on a Cortex-A8
START_TIMEOUT = 10.0           # after a clean build, until the IDE says the program runs
RUN_GRACE = 2.0                # a program still running this long after it started is playing
STOP_TIMEOUT = 3.0             # the IDE says nothing when nothing was running


class IdeUnreachable(BoardError):
    """No Bela IDE answers at that address (callers then go over SSH)."""


class IdeSession:
    """One socket.io connection to a Bela IDE; `status` objects for our project are queued."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client = socketio.AsyncClient(reconnection=False)
        self.statuses: asyncio.Queue = asyncio.Queue()
        self.joined = asyncio.Event()
        self.client.on("connect", self.joined.set, namespace=NAMESPACE)
        self.client.on("status", self.statuses.put_nowait, namespace=NAMESPACE)

    async def __aenter__(self) -> "IdeSession":
        try:
            await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
        except (asyncio.TimeoutError, socketio.exceptions.ConnectionError, OSError) as e:
            await self.client.disconnect()
            raise IdeUnreachable(f"no Bela IDE at {self.url}: {e or 'no answer'}") from None
        return self

    async def _connect(self) -> None:
        await self.client.connect(self.url, namespaces=[NAMESPACE], transports=["websocket"])
        await self.joined.wait()

    async def __aexit__(self, *exc) -> None:
        await self.client.disconnect()

    async def send(self, event: str, project: str) -> None:
        await self.client.emit("process-event", {"event": event, "currentProject": project}, namespace=NAMESPACE)

    async def next_status(self, timeout: float) -> dict:
        status = await asyncio.wait_for(self.statuses.get(), timeout)
        return status if isinstance(status, dict) else {}


async def ide_run(url: str, project: str, on_line=None) -> dict:
    """Ask the IDE to build and run `project`: the `board run --json` object, via "ide"."""
    say = on_line or (lambda line: None)
    async with IdeSession(url) as ide:
        await ide.send("run", project)
        result = {"project": project, "via": "ide", "errors": []}
        try:
            stderr = await _build(ide, project, say)
        except asyncio.TimeoutError:
            raise BoardError(f"the Bela IDE did not finish building {project} within {BUILD_TIMEOUT:g} s") from None
        errors = compiler_errors(stderr, project)
        if errors:
            return {**result, "state": "build_failed", "errors": errors}
        try:
            while True:
                status = await ide.next_status(START_TIMEOUT)
                _program_output(status, say)
                if status.get("running") and status.get("runProject") == project:
                    break
        except asyncio.TimeoutError:   # built, but never ran: a link error, or make's own failure
            return {**result, "state": "build_failed", "errors": failure_errors(stderr, project)}
        return {**result, **await _still_running(ide, say)}


def _program_output(status: dict, say, errors: list[str] | None = None) -> None:
    for line in (status.get("belaLog") or "").splitlines():
        say(line)
    for line in (status.get("belaLogErr") or "").splitlines():
        say(line)
        if errors is not None:
            errors.append(line)


async def _still_running(ide: IdeSession, say) -> dict:
    """The IDE says "running" as it starts the program: one that ends within RUN_GRACE (a crash
    in setup(), a model that does not load) is `stopped`, with what it said on stderr."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RUN_GRACE
    said: list[str] = []
    try:
        while True:
            status = await ide.next_status(max(0.01, deadline - loop.time()))
            _program_output(status, say, said)
            if status.get("running") is False:
                return {"state": "stopped", "errors": failure_errors("\n".join(said), fallback="the program exited")}
    except asyncio.TimeoutError:
        return {"state": "playing"}


async def _build(ide: IdeSession, project: str, say) -> str:
    """Wait for our project's build to start and end; its stdout goes to `say`; its stderr is returned."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUILD_TIMEOUT
    started = False
    while True:
        status = await ide.next_status(max(0.1, deadline - loop.time()))
        for line in (status.get("buildLog") or "").splitlines():
            say(line)
        if status.get("building") and status.get("buildProject") == project:
            started = True
        elif started and status.get("building") is False and "syntaxError" in status:
            stderr = status.get("syntaxError") or ""
            for line in stderr.splitlines():
                say(line)
            return stderr


async def ide_stop(url: str, project: str) -> dict:
    """Ask the IDE to stop what it runs (it runs `make stop` when it runs nothing itself)."""
    async with IdeSession(url) as ide:
        await ide.send("stop", project)
        try:
            while True:
                status = await ide.next_status(STOP_TIMEOUT)
                if status.get("running") is False and status.get("building") is False:
                    break
        except asyncio.TimeoutError:
            pass
    return {"project": project, "state": "stopped", "via": "ide", "errors": []}
