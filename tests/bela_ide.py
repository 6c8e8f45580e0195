"""The real Bela IDE (its IDE/ folder with dist and node_modules, from the shared third_party
tarball) served by Node on a loopback port, over a stand-in Bela folder.

The stand-in folder has what the IDE reads (projects/, examples/<category>/<example>/,
libraries/, IDE/public) and a Makefile (tests/bela_root/standin.mk) that decides what a build
and a run do: render.cpp compiled with g++ against Bela's real headers and tests/bela_standin, a
running program that waits for audio until it is stopped. The tarball is unpacked once into
~/.cache/bela-iree/bela-ide (72 MB, about 6 900 files); each IDE gets its own IDE/ folder in the
stand-in root with copies of index.js and dist/ (dist/main.js reads ../ide-dev.js, beside it) and
a link to the cached node_modules.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

from .conftest import BELA_INCLUDE, THIRD_PARTY
from .realtime import STANDIN_SOURCE
from .service_helpers import free_port

IDE_TARBALL = THIRD_PARTY / "bela-ide.tar.gz"
STANDIN_MAKEFILE = Path(__file__).resolve().parent / "bela_root" / "standin.mk"
NODE = shutil.which("node") or "node"


def unpacked_ide() -> Path:
    """The tarball's IDE/ folder, unpacked once per tarball (by content) and shared."""
    key = hashlib.sha256(IDE_TARBALL.read_bytes()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "bela-iree" / "bela-ide" / key
    if (cache / "IDE" / "index.js").exists():
        return cache / "IDE"
    partial = cache.with_name(f"{key}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(IDE_TARBALL) as tar:
        tar.extractall(partial, filter="tar")
    try:
        partial.rename(cache)   # another worker may have won: theirs is as good
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return cache / "IDE"


def make_standin_root(root: Path) -> Path:
    """A Bela folder for the IDE and for SSH: projects, an example, libraries, the Makefile."""
    for folder in ("projects", "libraries", "examples/Fundamentals/minimal", "IDE/public"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "examples/Fundamentals/minimal/render.cpp").write_text(MINIMAL_RENDER)
    (root / "Makefile").write_text(f"STANDIN_SOURCE := {STANDIN_SOURCE}\nBELA_INCLUDE := {BELA_INCLUDE}\n"
                                   f"include {STANDIN_MAKEFILE}\n")
    return root


def add_project(root: Path, name: str, render: str = None) -> Path:
    project = root / "projects" / name
    project.mkdir(parents=True, exist_ok=True)
    (project / "render.cpp").write_text(render or MINIMAL_RENDER)
    return project


class BelaIDE:
    """`node index.js` of the real IDE on a free loopback port, serving `root`."""

    def __init__(self, root: Path):
        self.root = make_standin_root(root)
        self.port = free_port()
        source = unpacked_ide()
        ide = self.root / "IDE"
        shutil.copy(source / "index.js", ide / "index.js")
        shutil.copytree(source / "dist", ide / "dist", dirs_exist_ok=True)
        if not (ide / "node_modules").exists():
            (ide / "node_modules").symlink_to(source / "node_modules")
        (ide / "ide-dev.js").write_text(
            f'exports.Bela = "{self.root}";\nexports.local_dev = true;\nexports.httpPort = {self.port};\n'
            f'exports.board = "Bela";\nexports.motdPath = "{self.root}/motd";\n')
        self.log_path = root.parent / f"bela-ide-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "BelaIDE":
        self.process = subprocess.Popen([NODE, "index.js"], cwd=self.root / "IDE", start_new_session=True,
                                        stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Bela IDE exited: {self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the Bela IDE did not listen within {timeout:g} s: {self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Node, and whatever it started (make, the running program: each in its own group)."""
        subprocess.run(["make", "-s", "-C", str(self.root), "stop"], check=False, capture_output=True)
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


MINIMAL_RENDER = """\
#include <Bela.h>

bool setup(BelaContext* context, void* userData) { return true; }

void render(BelaContext* context, void* userData)
{
	for(unsigned int n = 0; n < context->audioFrames; ++n)
		for(unsigned int c = 0; c < context->audioOutChannels; ++c)
			audioWrite(context, n, c, audioRead(context, n, c % context->audioInChannels));
}

void cleanup(BelaContext* context, void* userData) {}
"""

BROKEN_RENDER = MINIMAL_RENDER.replace("return true; }", "return undeclared_gain; }")

# builds, but the program ends at once, as one whose model does not load would
CRASHING_RENDER = MINIMAL_RENDER.replace("#include <Bela.h>\n", """#include <Bela.h>
#include <cstdio>
#include <cstdlib>

static int crash_at_start = (std::fputs("cannot load model.vmfb: stand-in crash\\n", stderr), std::exit(3), 0);
""")
