"""`board run|stop|status`: against the real Bela IDE (Node, on loopback, over a stand-in Bela folder
whose Makefile compiles render.cpp with g++) and over a real sshd (tests/sshd.py) when no IDE answers."""
import json
import os
import subprocess
import time

import pytest

from service.board.compiler_errors import compiler_errors, failure_errors
from service.board.ssh_run import make_arguments

from .bela_ide import BROKEN_RENDER, CRASHING_RENDER, BelaIDE, add_project
from .service_helpers import BELA_IREE, free_port
from .sshd import FakeBoard


@pytest.fixture
def board(board):
    """conftest's board, and any program the test left running on it stopped."""
    yield board
    subprocess.run(["make", "-s", "-C", str(board.root), "stop"], check=False, capture_output=True)


@pytest.fixture
def ide(board):
    """The real Bela IDE serving the sshd board's Bela folder, as on a board."""
    served = BelaIDE(board.root).start()
    yield served
    served.stop()


def bela_iree(board: FakeBoard, *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    result = subprocess.run([BELA_IREE, *args, "--json"], capture_output=True, text=True, env=board.env(), timeout=300)
    assert result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout), result


def running_pid(board: FakeBoard, project: str | None = None) -> int | None:
    """The stand-in program's pid while it runs (the stand-in Makefile records it), and with
    `project`, only once it is that project's program (the recipe's shell execs it)."""
    pid_file = board.root / ".running.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        if project and os.readlink(f"/proc/{pid}/exe") != str(board.root / "projects" / project / project):
            return None
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# ---- the compiler's errors and the IDE's make arguments (pure functions) ------------------------

def test_compiler_errors_have_file_and_line_relative_to_the_project():
    output = """/root/Bela/projects/amp/render.cpp: In function 'bool setup(BelaContext*, void*)':
/root/Bela/projects/amp/render.cpp:12:5: error: 'gain' was not declared in this scope
   12 |     gain = 1;
/root/Bela/projects/amp/render.cpp:20:1: warning: unused variable 'x'
/root/Bela/projects/amp/generated/model/model_config.h:3: fatal error: missing.h: No such file or directory
/root/Bela/include/Bela.h:40:2: error: clang says so
make: *** [/root/Bela/Makefile:509: /root/Bela/projects/amp/build/render.o] Error 1
"""
    assert compiler_errors(output, "amp") == [
        {"file": "render.cpp", "line": 12, "message": "'gain' was not declared in this scope"},
        {"file": "generated/model/model_config.h", "line": 3, "message": "missing.h: No such file or directory"},
        {"file": "/root/Bela/include/Bela.h", "line": 40, "message": "clang says so"}]
    # a failure without a compiler line (the linker, make itself) still says something
    assert failure_errors("render.o: in function `render':\nundefined reference to `tick'\ncollect2: error: ld returned 1 exit status\n"
                          "make: *** [Makefile:40: amp] Error 1\n") == [
        {"file": None, "line": None, "message": "collect2: error: ld returned 1 exit status"}]


def test_make_arguments_are_the_ones_the_bela_ide_derives_from_settings_json():
    settings = {"CLArgs": {"-p": "16", "-C": "8", "--pga-gain-left": "10", "--disable-led": 0, "user": "--x 1",
                           "make": "LDFLAGS=-L/root/Bela/libraries/iree/lib;CPPFLAGS=-I/x ;", "audioExpander": "0",
                           "-Y": ""}}
    assert make_arguments(settings) == ["CL=-p16 -C8 --pga-gain-left=10 --x 1",
                                        "LDFLAGS=-L/root/Bela/libraries/iree/lib", "CPPFLAGS=-I/x"]


# ---- through the real Bela IDE ----------------------------------------------------------------

def test_board_run_through_the_bela_ide_plays_reports_compiler_errors_and_stops(board, ide):
    add_project(board.root, "amp")
    (board.root / "projects/amp/settings.json").write_text(json.dumps(
        {"CLArgs": {"-p": "32", "-C": "8", "make": "EXTRA_FLAG=1"}}))
    result, run = bela_iree(board, "board", "run", board.address, "amp", "--board-root", str(board.root),
                            "--ide-url", ide.url)
    assert result == {"project": "amp", "state": "playing", "via": "ide", "errors": []}, run.stderr
    assert run.returncode == 0 and "amp playing" in run.stderr
    assert "g++" in run.stderr   # make's output streamed while it built
    assert wait_until(lambda: running_pid(board, "amp"))   # the IDE says "running" as it starts `make runide`
    # the IDE ran make with the arguments board run would give it over SSH
    assert f"'CL={make_arguments(json.loads((board.root / 'projects/amp/settings.json').read_text()))[0][3:]}' 'EXTRA_FLAG=1'" in ide.logs()

    add_project(board.root, "broken", BROKEN_RENDER)
    result, run = bela_iree(board, "board", "run", board.address, "broken", "--board-root", str(board.root),
                            "--ide-url", ide.url)
    assert result["state"] == "build_failed" and result["via"] == "ide" and run.returncode == 1
    assert [(e["file"], e["line"]) for e in result["errors"]] == [("render.cpp", 3)]
    assert "undeclared_gain" in result["errors"][0]["message"]   # gcc's quotes follow the locale
    assert "render.cpp:3" in run.stderr
    assert wait_until(lambda: running_pid(board) is None)   # the IDE stopped amp before building broken

    # it builds, then ends at once: not playing, and what it said is the error
    add_project(board.root, "crash", CRASHING_RENDER)
    result, run = bela_iree(board, "board", "run", board.address, "crash", "--board-root", str(board.root),
                            "--ide-url", ide.url)
    assert result["state"] == "stopped" and run.returncode == 1
    assert result["errors"] == [{"file": None, "line": None, "message": "cannot load model.vmfb: stand-in crash"}]

    result, _ = bela_iree(board, "board", "run", board.address, "amp", "--board-root", str(board.root), "--ide-url", ide.url)
    assert result["state"] == "playing" and wait_until(lambda: running_pid(board, "amp"))
    result, _ = bela_iree(board, "board", "stop", board.address, "amp", "--board-root", str(board.root), "--ide-url", ide.url)
    assert result == {"project": "amp", "state": "stopped", "via": "ide", "errors": []}
    assert wait_until(lambda: running_pid(board) is None)


# ---- over SSH, when no IDE answers ------------------------------------------------------------

def test_board_run_over_ssh_when_no_ide_answers(board):
    from .bela_ide import make_standin_root
    make_standin_root(board.root)
    add_project(board.root, "amp")
    closed = f"http://127.0.0.1:{free_port()}"
    result, run = bela_iree(board, "board", "run", board.address, "amp", "--board-root", str(board.root), "--ide-url", closed)
    assert result == {"project": "amp", "state": "playing", "via": "ssh", "errors": []}, run.stderr
    assert "no Bela IDE at" in run.stderr and "g++" in run.stderr
    pid = running_pid(board, "amp")
    assert pid
    # it outlives our SSH session (the command has returned)
    time.sleep(0.5)
    assert running_pid(board) == pid

    add_project(board.root, "broken", BROKEN_RENDER)
    result, run = bela_iree(board, "board", "run", board.address, "broken", "--board-root", str(board.root), "--ide-url", closed)
    assert result["state"] == "build_failed" and result["via"] == "ssh" and run.returncode == 1
    assert [(e["file"], e["line"]) for e in result["errors"]] == [("render.cpp", 3)]
    assert "undeclared_gain" in result["errors"][0]["message"]

    add_project(board.root, "crash", CRASHING_RENDER)
    result, run = bela_iree(board, "board", "run", board.address, "crash", "--board-root", str(board.root), "--ide-url", closed)
    assert result["state"] == "stopped" and result["via"] == "ssh" and run.returncode == 1
    assert result["errors"] == [{"file": None, "line": None, "message": "cannot load model.vmfb: stand-in crash"}]

    result, _ = bela_iree(board, "board", "run", board.address, "amp", "--board-root", str(board.root), "--ide-url", closed)
    assert result["state"] == "playing" and wait_until(lambda: running_pid(board, "amp"))
    result, _ = bela_iree(board, "board", "stop", board.address, "amp", "--board-root", str(board.root), "--ide-url", closed)
    assert result == {"project": "amp", "state": "stopped", "via": "ssh", "errors": []}
    assert wait_until(lambda: running_pid(board) is None)


# ---- board status: the running program's status file --------------------------------------------

def write_status(board: FakeBoard, project: str, pid: int, updated: float, build: int, running: bool = True) -> None:
    """As the program's auxiliary task does: the whole file written beside, then renamed."""
    folder = board.root / "projects" / project
    folder.mkdir(parents=True, exist_ok=True)
    status = {"project": project, "pid": pid, "running": running, "updated": updated,
              "model": {"build": build, "sha256": f"{build:064x}", "since": "2026-12-07T10:42:03Z"},
              "swaps": 3, "overruns": 1, "glue": "render", "latency_samples": 0, "last_error": None}
    (folder / "status.tmp").write_text(json.dumps(status))
    (folder / "status.tmp").replace(folder / "bela-iree-status.json")


def test_board_status_reads_what_the_running_program_says(board):
    no_file, _ = bela_iree(board, "board", "status", board.address, "--board-root", str(board.root))
    assert no_file["running"] is False and no_file["model"] is None and "no bela-iree-status.json" in no_file["message"]

    program = subprocess.Popen(["sleep", "60"])   # a live pid on the board
    try:
        write_status(board, "older", program.pid, time.time() - 100, build=4)
        os.utime(board.root / "projects/older/bela-iree-status.json", (time.time() - 100,) * 2)
        write_status(board, "amp", program.pid, time.time(), build=12)
        report, run = bela_iree(board, "board", "status", board.address, "--board-root", str(board.root))
        assert {key: report[key] for key in ("address", "running", "project", "model", "swaps", "overruns", "glue",
                                             "latency_samples")} == {
            "address": board.address, "running": True, "project": "amp",
            "model": {"build": 12, "sha256": f"{12:064x}", "since": "2026-12-07T10:42:03Z"},
            "swaps": 3, "overruns": 1, "glue": "render", "latency_samples": 0}
        assert "amp on" in run.stderr and "playing build 12 since 10:42:03" in run.stderr and "1 overruns" in run.stderr
        # a named project; one whose file was last written long ago is not running
        older, _ = bela_iree(board, "board", "status", board.address, "older", "--board-root", str(board.root))
        assert older["project"] == "older" and older["model"]["build"] == 4 and older["running"] is False
    finally:
        program.kill()
        program.wait()
    # the program died without saying so: its file still says running, its pid is gone
    dead, _ = bela_iree(board, "board", "status", board.address, "--board-root", str(board.root))
    assert dead["project"] == "amp" and dead["running"] is False
