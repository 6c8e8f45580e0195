"""A board while `serve --board` runs: kept connected, deployed to, measured on, watched.

- connection: retried with backoff (0.5 s doubling to 10 s) whenever it drops; the panel gets
  `board` events (online/offline) so an unplugged cable shows at once;
- after each build: deploy (board/deploy.py), then benchmark there (board/remote_bench.py);
- once a second: the board's CPU (Xenomai when present, else /proc/stat) as `cpu` events;
- once a second: model.py / bela-iree.toml edited on the board (saved in the Bela IDE) are
  pulled here, which the local watcher turns into a rebuild whose result is pushed back;
- after each deploy, the program on the board restarted or swapped, and once a second what it
  plays (board/player.py). Every `board` event carries the whole picture (connection state and
  the program's), merged here.
"""
from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from .. import events
from ..cpu import proc_stat_busy
from ..errors import BoardError
from ..layout import MODEL_DIR, MODULE_FILE
from .connection import Board
from .deploy import Deployer
from .player import Player
from .remote_bench import bench_on_board
from .remote_tuning import tune_on_board
from .xenomai import parse_sched_stat

BACKOFF_START, BACKOFF_MAX = 0.5, 10.0
POLL_SECONDS = 1.0


class BoardSession:
    def __init__(self, board: Board, project: Path, publish, ide_url: str | None = None):
        self.board = board
        self.project = project
        self.deployer = Deployer(board, project)
        self.publish = publish
        self.view = {"type": "board", "state": "offline", "address": str(board.address), "message": ""}
        self.player = Player(board, project.name, ide_url, self.publish_board, publish)
        self.current_build = lambda: None   # the build being deployed (serve hands the builder's)
        self.online = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.last_proc_stat: str | None = None
        self.lock = asyncio.Lock()   # one conversation with the board at a time

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._keep_connected())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.player.stop()
        await self.board.close()

    def publish_board(self, **fields) -> None:
        """One `board` event: the whole picture with these fields changed."""
        self.view = {**self.view, **fields}
        self.publish(dict(self.view))

    def _state(self, state: str, message: str) -> None:
        self.publish_board(state=state, message=message)
        self.publish(events.log(None, f"board {self.board.address}: {message}"))

    async def _keep_connected(self) -> None:
        delay = BACKOFF_START
        while True:
            try:
                await self.board.connect()
                self.board.require_root()
                delay = BACKOFF_START
                self.online.set()
                self._state("online", f"connected (Bela folder {self.board.root})")
                await self._watch()
            except BoardError as e:
                was_online = self.online.is_set()
                self.online.clear()
                await self.board.close()
                self._state("offline", f"{e.message}; retrying in {delay:g} s" + (f" ({e.hint})" if e.hint and not was_online else ""))
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _watch(self) -> None:
        """Files edited on the board, and the program's status file, each in its own loop: the
        status is a small read beside whatever else runs (a deploy, a benchmark), so a live swap
        is told at once. The first loop to lose the board ends both."""
        watchers = [asyncio.ensure_future(self._watch_remote_changes()), asyncio.ensure_future(self._watch_program())]
        try:
            await asyncio.gather(*watchers)
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch_remote_changes(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            async with self.lock:
                pulled = await self.deployer.pull_changed()
            if pulled:
                self.publish(events.log(None, f"{', '.join(pulled)} changed on the board: pulled, rebuilding"))

    async def _watch_program(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self.player.poll()

    async def require_online(self, timeout: float = 15.0) -> None:
        try:
            await asyncio.wait_for(self.online.wait(), timeout)
        except asyncio.TimeoutError:
            raise BoardError(f"{self.board.address} is offline", hint="waiting for the board to come back") from None

    async def deploy_and_bench(self, compiled, target) -> dict:
        """The builder's bench step when a board is attached."""
        await self.require_online()
        async with self.lock:
            deployed = await self.deployer.deploy()
            self.publish(events.log(None, f"deployed to {self.deployer.remote_project}: "
                                          f"{len(deployed['uploaded'])} file(s) sent, {deployed['unchanged']} unchanged"
                                          + (f" ({', '.join(deployed['uploaded'])})" if deployed["uploaded"] else "")))
            module = self.project / MODEL_DIR / MODULE_FILE
            sha256 = hashlib.sha256(module.read_bytes()).hexdigest() if module.exists() else None
            self.player.deployed(self.current_build(), deployed["uploaded"], sha256)
            return await bench_on_board(self.board, compiled, seconds=0.5, estimate=False)

    async def tune(self, model_file: Path, options) -> dict:
        """The builder's flag-variant measurement when a board is attached."""
        await self.require_online()
        async with self.lock:
            return await tune_on_board(self.board, model_file, options)

    async def cpu_sample(self) -> dict | None:
        if not self.online.is_set():
            return None
        async with self.lock:
            text = await self.board.run("cat /proc/xenomai/sched/stat 2>/dev/null; echo @@; head -1 /proc/stat", check=False)
        xenomai, _, proc_stat = text.partition("@@")
        proc_stat = proc_stat.strip()
        linux = proc_stat_busy(self.last_proc_stat, proc_stat) if self.last_proc_stat else None
        self.last_proc_stat = proc_stat
        if xenomai.strip():
            load = parse_sched_stat(xenomai, linux)
            return events.cpu(load.total, "board", msw=load.mode_switches, audio=load.audio, xenomai=True)
        return None if linux is None else events.cpu(linux, "board", xenomai=False)
