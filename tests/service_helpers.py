"""A real `bela-iree serve` in a child process, and real websocket clients, for the tests."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import websockets

from service.pipeline.variants import VARIANTS

BELA_IREE = str(Path(sys.executable).parent / "bela-iree")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, project: Path, *args: str, env: dict | None = None, port: int | None = None,
                 tune: bool = False):
        """tune=False passes --no-tune: most tests watch one build at a time, and measuring flag
        variants after a model's first build would add builds they do not expect."""
        self.project = project
        self.port = port or free_port()
        self.log = open(project.parent / f"serve-{self.port}.log", "a")
        self.process = subprocess.Popen([BELA_IREE, "serve", str(project), "--port", str(self.port), *args,
                                         *([] if tune else ["--no-tune"])],
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True,
                                        env=env)
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.logs()
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Client:
    """Collects every message the service sends; `wait_for` a message matching a predicate."""

    def __init__(self, ws):
        self.ws = ws
        self.messages: list[dict] = []
        self.arrival: list[float] = []   # time.perf_counter() when each message arrived
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, service: Service, **kwargs) -> "Client":
        return cls(await websockets.connect(service.ws_url, max_size=2**24, **kwargs))

    async def _read(self):
        try:
            async for text in self.ws:
                self.arrival.append(time.perf_counter())
                self.messages.append(json.loads(text))
                self.arrived.set()
        except websockets.ConnectionClosed:
            pass

    async def wait_for(self, predicate, timeout: float = 120.0, after: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kinds = [(m["type"], m.get("state")) for m in self.messages[-15:]]
                raise AssertionError(f"no matching message within {timeout} s; last: {kinds}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def build_finished(self, after: int = 0, timeout: float = 180.0) -> dict:
        return await self.wait_for(lambda m: m["type"] == "build" and m["state"] in ("done", "failed", "cancelled"),
                                   timeout, after)

    def builds(self, build_id: int) -> list[str]:
        return [m["state"] for m in self.messages if m["type"] == "build" and m["id"] == build_id]

    async def send(self, message) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def measured_variants(line: str) -> tuple[dict[str, float | None], str]:
    """The builder's "flag variants: default 1.2 ms, data-tiling failed, ... -> BEST" log line:
    each variant's median in ms (None when it failed), and the one chosen."""
    table, best = line.removeprefix("flag variants: ").rsplit(" -> ", 1)
    times = {}
    for entry in table.split(", "):
        name, _, figure = entry.partition(" ")
        times[name] = None if figure == "failed" else float(figure.removesuffix(" ms"))
    return times, best


async def built_with_the_fastest_flags(client: Client, first: dict, measured: dict, timeout: float = 180.0) -> dict:
    """After a build (`first`) and its flag variants' measurement (the `measured` log line):
    every variant was measured and the fastest chosen; the model is built again with it when
    `first` used other flags, and not otherwise; nothing is built after that. Whichever flags
    win on this machine. Returns the bench of the build with the chosen flags."""
    times, best = measured_variants(measured["line"])
    assert set(times) == set(VARIANTS), measured["line"]
    timed = {name: ms for name, ms in times.items() if ms is not None}
    assert timed and timed[best] == min(timed.values()), measured["line"]
    # a build's own figures, not the block-size trade-off measured beside it (phase "blocks", default flags)
    bench = await client.wait_for(lambda m: m["type"] == "bench" and m["build_id"] == first["id"]
                                  and m.get("phase") != "blocks")
    if best != bench["variant"]:
        rebuilt = await client.wait_for(lambda m: m["type"] == "build" and m.get("reason") == f"faster flags measured: {best}")
        done = await client.build_finished(after=client.messages.index(rebuilt), timeout=timeout)
        assert done["state"] == "done", done
        bench = await client.wait_for(lambda m: m["type"] == "bench" and m["build_id"] == done["id"]
                                      and m.get("phase") != "blocks")
    assert bench["variant"] == best
    await asyncio.sleep(1.0)  # the model is tuned now: no further build
    assert [m for m in client.messages if m["type"] == "build" and m["state"] == "queued"][-1]["id"] == bench["build_id"]
    return bench

