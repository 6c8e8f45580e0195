"""Where IREE's runtime tools come from, per target.

host:          the tools of the installed iree-base-runtime wheel, run natively.
gem, bbai64:   the aarch64 build of the same wheel version (downloaded once with pip, cached),
               run under qemu-aarch64 with Debian's arm64 cross libraries. Timings there are
               emulated; accuracy is real.
bela:          no armv7 runtime is published; it runs on a board only.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import BenchError
from ..pipeline import cache
from ..pipeline.targets import Target
from ..pipeline.tools import run_tool, system_tool

AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"


def host_tool(name: str) -> Path:
    spec = importlib.util.find_spec("iree._runtime_libs")
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.exists():
        raise BenchError(f"{name} is missing from the iree-base-runtime wheel", hint="pip install iree-base-runtime")
    return path


def aarch64_tools_dir() -> Path:
    """The aarch64 runtime tools matching our IREE version, downloaded on first use."""
    version = cache.iree_version()
    folder = cache.cache_root() / f"iree-runtime-{version}-aarch64"
    if (folder / "iree-benchmark-module").exists() and (folder / "version.py").exists():
        return folder
    with tempfile.TemporaryDirectory(prefix="bela-iree-wheel-") as tmp:
        argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                "--platform", "manylinux_2_28_aarch64", "--python-version", "3.11",
                f"iree-base-runtime=={version}", "-d", tmp]
        result = run_tool(argv, timeout=600, stage="benchmarking")
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise BenchError(f"could not download the aarch64 iree-base-runtime {version} wheel",
                             detail=result.stderr[-2000:], hint="check access to PyPI")
        staging = Path(tempfile.mkdtemp(dir=cache.cache_root(), prefix=".aarch64-"))
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.startswith("iree/_runtime_libs/iree-") or member == "iree/_runtime_libs/version.py":
                    target = staging / Path(member).name
                    target.write_bytes(wheel.read(member))
                    target.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder


def tool_command(target: Target, name: str) -> tuple[list[str], str]:
    """The argv prefix running IREE tool `name` for target, and where it runs (host|emulator)."""
    if target.arch == "x86_64":
        return [str(host_tool(name))], "host"
    if target.arch == "aarch64":
        qemu = system_tool("qemu-aarch64", "qemu-user")
        if not Path(AARCH64_SYSROOT, "lib", "libstdc++.so.6").exists():
            raise BenchError("the arm64 cross libraries are missing",
                             hint="apt-get install libc6-arm64-cross libstdc++6-arm64-cross")
        return [qemu, "-L", AARCH64_SYSROOT, str(aarch64_tools_dir() / name)], "emulator"
    raise BenchError(f"no {target.arch} IREE runtime runs on this machine", stage="benchmarking",
                     hint=f"run {target.name} artifacts on a board: --board root@bela.local")
