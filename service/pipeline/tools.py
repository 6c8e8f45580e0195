"""Running external tools: one function, no shell, always a time limit, always a log."""
from __future__ import annotations

import contextvars
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import Cancelled, ToolMissing, ToolTimeout

# Set by whoever may need to stop a run early (the service cancelling a stale build): called
# with each process run_tool starts in this context...
process_started: contextvars.ContextVar = contextvars.ContextVar("process_started", default=None)
# ...and a threading.Event set when the work was cancelled: long loops (tuning's variants and
# rounds) then stop at the next tool they would start, instead of carrying on unseen.
cancel_requested: contextvars.ContextVar = contextvars.ContextVar("cancel_requested", default=None)


def check_cancelled() -> None:
    """Raise Cancelled if the work running in this context was cancelled."""
    event = cancel_requested.get()
    if event is not None and event.is_set():
        raise Cancelled()


def iree_compile() -> str:
    """The iree-compile binary itself; the venv's console script is a Python wrapper that costs
    a few hundred ms of start-up on every compile."""
    try:
        from iree.compiler.tools.binaries import find_tool
        return str(Path(find_tool("iree-compile")).resolve())
    except Exception:
        return venv_tool("iree-compile")


def iree_opt() -> str:
    """iree-opt, beside iree-compile (the inline HAL's executable preprocessing, inline_hal.py)."""
    try:
        from iree.compiler.tools.binaries import find_tool
        return str(Path(find_tool("iree-opt")).resolve())
    except Exception:
        return venv_tool("iree-opt")


def venv_tool(name: str) -> str:
    """A console tool installed beside this Python."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise ToolMissing(f"{name} not found", hint="reinstall the project: make test (or pip install -e .)")
    return found


def system_tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ToolMissing(f"{name} not found", hint=f"install the Debian package {package} (apt-get install {package})")
    return found


def _started(proc: subprocess.Popen) -> None:
    """Tell whoever may stop this work about the new process; if it was cancelled while the
    process was starting (too late to be in the canceller's list), stop the process here."""
    if process_started.get():
        process_started.get()(proc)
    event = cancel_requested.get()
    if event is not None and event.is_set():
        os.killpg(proc.pid, signal.SIGKILL)


def run_tool(argv: list[str], *, timeout: float, log: Path | None = None, stage: str = "unknown",
             cwd: Path | None = None, env: dict | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run argv to completion or kill its whole process group after `timeout` seconds.

    The exact command and its output go to `log` (beside the artifact) so a failure can be
    reproduced by hand. Returns the completed process whatever its exit code; raises
    ToolTimeout when it had to be killed, Cancelled when the work it belongs to was cancelled.
    """
    check_cancelled()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _started(proc)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        _write_log(log, argv, out, err, f"killed after {timeout:g} s")
        raise ToolTimeout(f"{Path(argv[0]).name} did not finish within {timeout:g} s and was stopped",
                          stage=stage, detail=err.decode(errors="replace")[-4000:],
                          hint="the model may hit a compiler bug; simplify it or raise the time limit (--timeout)")
    _write_log(log, argv, out, err, f"exit code {proc.returncode}")
    check_cancelled()   # killed because the work was cancelled: not the tool's failure
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def _write_log(log: Path | None, argv: list[str], out: bytes, err: bytes, outcome: str) -> None:
    if log is None:
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write(shlex.join(argv) + "\n# " + outcome + "\n")
        if out:
            f.write("# stdout\n" + out.decode(errors="replace")[-200_000:])
        if err:
            f.write("# stderr\n" + err.decode(errors="replace")[-200_000:])


def run_tool_lines(argv: list[str], *, timeout: float, log: Path, on_line, stage: str = "unknown",
                   cwd: Path | None = None, env: dict | None = None) -> int:
    """run_tool for long builds: each output line goes to `on_line` as it comes (for progress) and
    to `log`. Returns the exit code; raises ToolTimeout after `timeout` seconds."""
    check_cancelled()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(shlex.join(argv) + "\n")
        f.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, text=True, errors="replace")
        _started(proc)
        killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        try:
            for line in proc.stdout:
                f.write(line)
                on_line(line.rstrip("\n"))
            proc.wait()
        finally:
            killer.cancel()
        f.write(f"# exit code {proc.returncode}\n")
    if proc.returncode < 0 and time.monotonic() - started >= timeout:
        raise ToolTimeout(f"{Path(argv[0]).name} did not finish within {timeout:g} s and was stopped",
                          stage=stage, detail=log.read_text()[-4000:])
    return proc.returncode
