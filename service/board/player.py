"""The program on the board while `serve --board` runs: after each deploy, restarted or swapped,
and what it plays.

- A deploy that changed what the program is built from (a source, header or library the Bela
  Makefile compiles or links, or settings.json, which holds its make flags and command line) asks
  the board to build and run the project (board/program.py: the Bela IDE, else SSH). So does a
  deploy while no program of this project runs, or while a restart is still under way. The rest
  is not built into the program: the live-swap files (layout.LIVE_SWAP_FILES), the build's own
  records (compile.log, export.json, expected.npy), model.py, bela-iree.toml, README.md.
- Otherwise the running program swaps the new module in by itself (docs/design.md, "Live model
  swap"); its status file (board/status.py, polled once a second) says when it plays the module
  deployed (by sha256), and that build is then `playing` with `swapped`. A program that has not
  swapped it in within SWAP_TIMEOUT (a failed load: it keeps the old model and says why in
  `last_error`) is restarted, so what was saved is what plays.

Every change is told as one `board` event carrying the whole picture (`publish_board` merges it),
so the panel and a client that connects later see the same thing.
"""
from __future__ import annotations

import asyncio
from pathlib import PurePosixPath

from .. import events
from ..errors import BoardError
from .program import run_program
from .status import board_status

# what Bela's Makefile compiles or links from a project folder, and the file of its make flags
BUILT_SUFFIXES = {".cpp", ".cc", ".c", ".h", ".hh", ".hpp", ".S", ".s", ".a", ".so", ".o"}
BUILD_SETTINGS = "settings.json"
SWAP_TIMEOUT = 15.0
STATUS_FIELDS = ("running", "model", "swaps", "overruns", "glue", "latency_samples", "last_error")


def needs_restart(uploaded: list[str]) -> bool:
    """Whether these deployed files change the program itself (not only its model)."""
    return any(name == BUILD_SETTINGS or PurePosixPath(name).suffix in BUILT_SUFFIXES for name in uploaded)


class Player:
    def __init__(self, board, project_name: str, ide_url: str | None, publish_board, publish):
        self.board = board
        self.name = project_name
        self.ide_url = ide_url
        self.publish_board = publish_board   # merges fields into the session's `board` event
        self.publish = publish
        self.restart: asyncio.Task | None = None
        self.expected: dict | None = None    # a deployed module the running program should swap in
        self.status: dict | None = None

    async def stop(self) -> None:
        if self.restart:
            self.restart.cancel()
            await asyncio.gather(self.restart, return_exceptions=True)

    def deployed(self, build_id: int | None, uploaded: list[str], sha256: str | None) -> None:
        """After a deploy: restart the program, or wait for it to swap the new module in."""
        if not uploaded:
            return
        restarting = self.restart is not None and not self.restart.done()
        running = bool(self.status and self.status["running"])
        if needs_restart(uploaded) or not running or restarting:
            self.expected = None
            if restarting:
                self.restart.cancel()
            self.restart = asyncio.get_running_loop().create_task(self._restart(build_id, self.restart))
            return
        self.expected = {"build_id": build_id, "sha256": sha256, "since": asyncio.get_running_loop().time()}
        self.publish_board(program="swapping", build_id=build_id)

    async def _restart(self, build_id: int | None, previous: asyncio.Task | None) -> None:
        if previous:
            await asyncio.gather(previous, return_exceptions=True)
        self.publish_board(program="building", build_id=build_id, errors=[])
        self.publish(events.log(build_id, f"board: building and running {self.name}"))
        try:
            result = await run_program(self.board, self.name, self.ide_url,
                                       lambda line: self.publish(events.log(build_id, f"board: {line}")))
        except BoardError as e:
            result = {"state": "stopped", "via": None, "errors": [{"file": None, "line": None, "message": e.message}]}
        for error in result["errors"]:
            where = f"{error['file']}:{error['line']}: " if error["file"] else ""
            self.publish(events.log(build_id, f"board: error: {where}{error['message']}"))
        if result["state"] == "playing":
            self.publish_board(program="playing", playing=build_id, restarted=True, swapped=False, errors=[],
                               via=result["via"])
            self.publish(events.log(build_id, f"board: {self.name} playing build {build_id} (restarted, via {result['via']})"))
        else:
            self.publish_board(program=result["state"], errors=result["errors"], via=result["via"])

    async def poll(self) -> None:
        """Read the status file; tell what changed, and a live swap once the new module plays."""
        status = await board_status(self.board, self.name)
        summary = {key: status.get(key) for key in STATUS_FIELDS}
        if summary != (self.status and {key: self.status.get(key) for key in STATUS_FIELDS}):
            self.publish_board(status=summary)
        self.status = status
        expected = self.expected
        if not expected:
            return
        if status["running"] and (status["model"] or {}).get("sha256") == expected["sha256"]:
            self.expected = None
            self.publish_board(program="playing", playing=expected["build_id"], swapped=True, restarted=False,
                               errors=[], via="swap")
            self.publish(events.log(expected["build_id"], f"board: {self.name} playing build "
                                                          f"{expected['build_id']} (swapped live)"))
        elif asyncio.get_running_loop().time() - expected["since"] > SWAP_TIMEOUT:
            self.expected = None
            why = f" (its last error: {status['last_error']})" if status.get("last_error") else ""
            self.publish(events.log(expected["build_id"], f"board: the program did not swap build "
                                                          f"{expected['build_id']} in within {SWAP_TIMEOUT:g} s{why}: restarting it"))
            self.restart = asyncio.get_running_loop().create_task(self._restart(expected["build_id"], self.restart))
