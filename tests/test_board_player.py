"""`serve --board` after each deploy: the program on the board restarted through the real Bela IDE
(Node on loopback, over the sshd board's Bela folder) when the program itself changed, swapped live
when only its model did, and the board's compiler errors in the panel's log."""
import hashlib
import json
import os
import threading
import time

import pytest

from service.board.player import needs_restart

from .bela_ide import BROKEN_RENDER, MINIMAL_RENDER, BelaIDE
from .conftest import cli
from .service_helpers import Client, Service
from .sshd import FakeBoard
from .test_board_program import running_pid, wait_until


@pytest.fixture
def ide(board):
    served = BelaIDE(board.root).start()
    yield served
    served.stop()


def test_only_files_the_program_is_built_from_need_a_restart():
    assert not needs_restart(["model.py", "generated/model/model.vmfb", "generated/model/build.json",
                              "generated/model/compile.log", "generated/model/export.json", "generated/model/expected.npy"])
    assert not needs_restart(["bela-iree.toml", "README.md"])
    assert needs_restart(["generated/model/model.vmfb", "generated/model/model_config.h"])
    assert needs_restart(["generated/model/libbela_iree_module.a"])   # EmitC: the model is linked in
    assert needs_restart(["render.cpp"]) and needs_restart(["settings.json"])


class StatusWriter(threading.Thread):
    """Stands in for the live-swap glue's auxiliary task (written by the runtime's own work): about
    once a second, the status file of the program running on the board, playing the module that is
    deployed there (by its sha256)."""

    def __init__(self, board: FakeBoard, project: str):
        super().__init__(daemon=True)
        self.board, self.folder = board, board.root / "projects" / project
        self.project, self.halt, self.swaps = project, threading.Event(), 0
        self.playing = None
        self.failing = threading.Event()   # the new module does not load: the old one keeps playing

    def run(self) -> None:
        while not self.halt.wait(0.3):
            pid = running_pid(self.board)
            module = self.folder / "generated/model/model.vmfb"
            if not pid or not module.exists():
                continue
            digest = hashlib.sha256(module.read_bytes()).hexdigest()
            error = "cannot load model.vmfb: stand-in failure" if self.failing.is_set() else None
            if error:
                digest = self.playing
            elif digest != self.playing:
                self.swaps += self.playing is not None
                self.playing = digest
            status = {"project": self.project, "pid": pid, "running": True, "updated": time.time(),
                      "model": {"build": None, "sha256": digest, "since": "2026-12-07T10:42:03Z"},
                      "swaps": self.swaps, "overruns": 2, "glue": "aux_task", "latency_samples": 32,
                      "last_error": error}
            (self.folder / "status.tmp").write_text(json.dumps(status))
            os.replace(self.folder / "status.tmp", self.folder / "bela-iree-status.json")


async def test_serve_restarts_the_program_when_it_changed_and_waits_for_a_swap_when_only_the_model_did(board, ide, tmp_path):
    board.install_aarch64_tools()
    project = tmp_path / "live"
    cli("new", str(project), "--target", "gem")
    (project / "render.cpp").write_text(MINIMAL_RENDER)   # user-owned: what the stand-in's g++ builds
    service = Service(project, *board.args(), "--ide-url", ide.url, env=board.env())
    writer = StatusWriter(board, "live")
    try:
        client = await Client.connect(service)
        done = await client.build_finished(timeout=300)
        assert done["state"] == "done", done
        # the first deploy sent render.cpp: the board built it (through its IDE) and runs it
        playing = await client.wait_for(lambda m: m["type"] == "board" and m.get("program") == "playing", timeout=120)
        assert playing["playing"] == done["id"] and playing["restarted"] and not playing["swapped"]
        assert playing["via"] == "ide" and playing["state"] == "online"
        assert any(m["type"] == "log" and m["line"].startswith("board: g++") for m in client.messages)
        assert wait_until(lambda: running_pid(board, "live"))   # the IDE says "running" as it starts `make runide`
        first_pid = running_pid(board, "live")

        # the running program reports what it plays; then only the model changes: no restart, a swap
        writer.start()
        await client.wait_for(lambda m: m["type"] == "board" and (m.get("status") or {}).get("running"), timeout=30)
        mark = len(client.messages)
        text = (project / "model.py").read_text().replace("hidden: int = 16", "hidden: int = 12")
        (project / "model.py").write_text(text)
        done = await client.build_finished(after=mark, timeout=300)
        assert done["state"] == "done", done
        swapped = await client.wait_for(lambda m: m["type"] == "board" and m.get("program") == "playing"
                                        and m.get("playing") == done["id"], timeout=60, after=mark)
        assert swapped["swapped"] and not swapped["restarted"] and swapped["status"]["swaps"] == 1
        assert swapped["status"]["overruns"] == 2 and running_pid(board) == first_pid   # the same program
        assert not [m for m in client.messages[mark:] if m["type"] == "board" and m.get("program") == "building"]

        # a module the running program fails to load: it keeps the old one and says why; after a
        # while the board is asked to run the project again, so what was saved is what plays
        writer.failing.set()
        mark = len(client.messages)
        (project / "model.py").write_text(text.replace("hidden: int = 12", "hidden: int = 10"))
        done = await client.build_finished(after=mark, timeout=300)
        restarted = await client.wait_for(lambda m: m["type"] == "board" and m.get("program") == "playing"
                                          and m.get("playing") == done["id"], timeout=120, after=mark)
        assert restarted["restarted"] and not restarted["swapped"]
        said = await client.wait_for(lambda m: m["type"] == "log" and "did not swap build" in m["line"], after=mark)
        assert "cannot load model.vmfb" in said["line"]
        writer.failing.clear()

        # render.cpp edited and broken: the board's compiler errors reach the panel, with file and line
        mark = len(client.messages)
        (project / "render.cpp").write_text(BROKEN_RENDER)
        await client.send({"type": "rebuild"})
        failed = await client.wait_for(lambda m: m["type"] == "board" and m.get("program") == "build_failed",
                                       timeout=300, after=mark)
        assert [(e["file"], e["line"]) for e in failed["errors"]] == [("render.cpp", 3)]
        assert "undeclared_gain" in failed["errors"][0]["message"]
        await client.wait_for(lambda m: m["type"] == "log" and m["line"].startswith("board: error: render.cpp:3: "),
                              after=mark)
        await client.close()
    finally:
        writer.halt.set()
        service.stop()
