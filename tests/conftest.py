"""Shared fixtures. Every test here uses the real IREE compiler and runtime, real qemu."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"   # screenshots and logs kept for people to look at


def _third_party() -> Path:
    """Sources this workplace keeps for builds and tests, used in place, never copied: its
    `shared/third_party` beside the checkout (or above it), else the workplace's own."""
    for folder in [*ROOT.parents, Path("/work")]:
        if (folder / "shared" / "third_party").is_dir():
            return folder / "shared" / "third_party"
    return ROOT.parent / "shared" / "third_party"


THIRD_PARTY = _third_party()
RUNTIME_SOURCE = THIRD_PARTY / "iree-runtime-src.tar.gz"
BELA_INCLUDE = THIRD_PARTY / "bela-include"


def _runtime_source_commit() -> str | None:
    """The IREE commit of the kept runtime source, as its README states it."""
    readme = THIRD_PARTY / "README.md"
    found = re.search(r"iree-org/iree\)\s+commit\s+([0-9a-f]{40})", readme.read_text()) if readme.exists() else None
    return found.group(1) if found else None


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Tests start from an empty cache (as CI does) unless BELA_IREE_CACHE is set. Runtime builds
    (minutes each) stay in the user's cache across runs: they are keyed by what they are built from."""
    if "BELA_IREE_CACHE" not in os.environ:
        os.environ["BELA_IREE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("BELA_IREE_RUNTIME_CACHE", str(Path.home() / ".cache" / "bela-iree" / "runtimes"))
    if RUNTIME_SOURCE.exists() and "BELA_IREE_RUNTIME_SOURCE" not in os.environ:
        os.environ["BELA_IREE_RUNTIME_SOURCE"] = str(RUNTIME_SOURCE)
        os.environ["BELA_IREE_RUNTIME_SOURCE_COMMIT"] = _runtime_source_commit() or ""
    yield


@pytest.fixture
def board(tmp_path):
    """A board: a real OpenSSH server on loopback with a temporary folder as its Bela root (sshd.py)."""
    from .sshd import FakeBoard
    fake = FakeBoard(tmp_path / "board")
    fake.start()
    yield fake
    fake.kill()


@pytest.fixture(scope="session")
def runtime():
    """runtime(target) -> RuntimeInstall: the IREE runtime `bela-iree runtime build` makes for it."""
    from service.runtimes.build import ensure_runtime
    return lambda target: ensure_runtime(target)[0]


def cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `bela-iree` command as a user would (this checkout's code: the installed
    script would otherwise import the package from wherever it was installed from)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([str(Path(sys.executable).parent / "bela-iree"), *args], capture_output=True,
                            text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"bela-iree {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def cli_json(*args: str, check: bool = True) -> tuple[dict, subprocess.CompletedProcess]:
    result = cli(*args, "--json", check=check)
    try:
        return json.loads(result.stdout), result
    except json.JSONDecodeError:
        raise AssertionError(f"bela-iree {' '.join(args)} --json printed no JSON object (exit {result.returncode}):\n"
                             f"stdout: {result.stdout[-1000:]!r}\nstderr: {result.stderr[-3000:]}") from None


# zoo models whose EmitC form unrolls its time steps (simple_rnn's 256-unit layer, too wide for
# the recurrent kernel: 1024 steps, minutes per target): the EmitC tests leave it out (lstm_amp,
# gru_knobs and mdrnn's layers are one kernel dispatch each, in EmitC too)
UNROLLED = ("simple_rnn",)


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    """compiled(model, target, fmt="vmfb", backend="llvm-cpu") -> CompileResult, each compiled once."""
    from service.modelfile import resolve_model
    from service.pipeline.compile import CompileOptions, compile_model
    from service.pipeline.targets import get_target

    results = {}
    out = tmp_path_factory.mktemp("compiled")

    def compile_once(model: str, target: str, fmt: str = "vmfb", backend: str = "llvm-cpu"):
        key = (model, target, fmt, backend)
        if key not in results:
            results[key] = compile_model(resolve_model(model), CompileOptions(get_target(target), fmt, backend),
                                         out / "-".join(key))
        return results[key]
    return compile_once
