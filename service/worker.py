"""The warm export worker: a child process that keeps torch imported between rebuilds.

Exporting in a fresh process costs ~2 s of `import torch` before any work; this worker pays
it once. Protocol: one JSON request per line on stdin ({"model_file", "out_dir",
"unroll_loops"}), one JSON reply per line on a private pipe (the worker's stdout is moved to
stderr so a print() in model.py cannot corrupt replies). `WarmExporter` is the parent's side:
it restarts the worker when it dies, and when an export runs past its time limit it asks the
worker where it is (faulthandler on SIGUSR1) so the error points at the model line, then
kills it and starts a fresh one.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .errors import ExportError, ToolTimeout
from .modelfile import user_frame


def serve_requests() -> None:
    import faulthandler
    import warnings
    warnings.simplefilter("ignore")
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # model prints go to stderr
    sys.stdout = sys.stderr
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=False)
    import torch  # noqa: F401  (the point of this process: pay the import once)
    from .errors import BelaIreeError
    from .pipeline.export import export_model
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"info": export_model(Path(request["model_file"]), Path(request["out_dir"]),
                                          unroll_loops=request.get("unroll_loops", False),
                                          block=request.get("block"))}
        except BelaIreeError as e:
            reply = {"error": e.to_json(), "detail": e.detail, "reads": e.reads}
        except BaseException as e:  # anything else is still the model's problem, reported, not fatal
            reply = {"error": {"stage": "export", "message": f"{type(e).__name__}: {e}"}}
        replies.write(json.dumps(reply) + "\n")


class WarmExporter:
    """Parent side. Thread-safe: one export at a time."""

    def __init__(self, startup_timeout: float = 120.0):
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        read_end, write_end = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from service.worker import serve_requests; serve_requests()"],
            stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE, text=True, bufsize=1,
            start_new_session=True)
        os.close(write_end)
        self.replies = os.fdopen(read_end, "r")
        self._stderr_tail: list[str] = []
        threading.Thread(target=self._drain_stderr, args=(self.process,), daemon=True).start()
        self._read_reply(self.startup_timeout, None)

    def _drain_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self._stderr_tail = (self._stderr_tail + [line])[-400:]

    def _read_reply(self, timeout: float, model_file: Path | None) -> dict:
        ready, _, _ = select.select([self.replies], [], [], timeout)
        if not ready:
            raise self._hung(timeout, model_file)
        line = self.replies.readline()
        if not line:
            code = self.process.wait()
            self._forget()
            cause = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise ExportError(f"the export worker died ({cause}) while loading or exporting the model",
                              file=str(model_file) if model_file else None,
                              detail="".join(self._stderr_tail[-60:]),
                              hint="a crash inside model.py or torch (os._exit, a segfault): the worker was restarted")
        return json.loads(line)

    def _hung(self, timeout: float, model_file: Path | None) -> ToolTimeout:
        """Where is it stuck? Ask faulthandler for the stack, then kill the worker."""
        file = line = None
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
            if model_file:
                stack = "".join(self._stderr_tail[-80:])
                file, line = user_frame(stack, model_file, most_recent_first=True)
        self.stop()
        return ToolTimeout(f"the export did not finish within {timeout:g} s and was stopped", stage="export",
                           file=file or (str(model_file) if model_file else None), line=line,
                           hint="an endless loop in model.py? the export worker was restarted")

    def export(self, model_file: Path, out_dir: Path, unroll_loops: bool, timeout: float,
               block: int | None = None) -> dict:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self.start()
            self.process.stdin.write(json.dumps({"model_file": str(model_file), "out_dir": str(out_dir),
                                                 "unroll_loops": unroll_loops, "block": block}) + "\n")
            self.process.stdin.flush()
            reply = self._read_reply(timeout, model_file)
        if "error" in reply:
            error = ExportError.from_json(reply["error"], detail=reply.get("detail"))
            error.reads = reply.get("reads")   # what to watch until it loads again
            raise error
        return reply["info"]

    def _forget(self) -> None:
        self.process = None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._forget()
