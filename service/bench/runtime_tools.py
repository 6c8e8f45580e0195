"""Where IREE's runtime tools come from, per target.

host:          the tools of the installed iree-base-runtime wheel, run natively.
gem, bbai64:   the aarch64 build of the same wheel version (downloaded once with pip, cached),
               run under qemu-aarch64 with Debian's arm64 cross libraries.
bela:          no armv7 runtime is published: the one `bela-iree runtime build --target bela`
               makes (built on first use, cached), run under qemu-arm with Debian's armhf libraries.

Emulation runs the board's own core (`-cpu cortex-a8` for Bela), so an instruction the board
lacks fails here as it would there. Timings there are emulated; accuracy is real.
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
# qemu-user and the board's C libraries, per architecture (Debian packages in brackets)
EMULATORS = {"aarch64": ("qemu-aarch64", AARCH64_SYSROOT, "libc6-arm64-cross libstdc++6-arm64-cross"),
             "armv7": ("qemu-arm", "/usr/arm-linux-gnueabihf", "libc6-armhf-cross")}


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


def module_mode(target: Target) -> list[str]:
    """On 32-bit ARM IREE's tools map the .vmfb (page-aligned) rather than read it into malloc'd
    memory (8-byte aligned there): on the inline HAL the kernels read the module's constants in
    place, with NEON loads that fault unless 16-byte aligned (runtime/src/model.c reads it aligned
    itself). Elsewhere the module is read as before (a mapped module's weights are not counted
    in the runtime's peak memory)."""
    return ["--module_mode=mmap"] if target.arch == "armv7" else []


def tool_command(target: Target, name: str, qemu_options: list[str] = ()) -> tuple[list[str], str]:
    """The argv prefix running IREE tool `name` for target, and where it runs (host|emulator).
    qemu_options go to the emulator (instruction_count.py loads its plugin with them)."""
    if target.arch == "x86_64":
        return [str(host_tool(name))], "host"
    if target.arch == "aarch64":
        return [*emulator(target, qemu_options), str(aarch64_tools_dir() / name)], "emulator"
    from ..runtimes.build import ensure_runtime
    install, _ = ensure_runtime(target.name)
    return [*emulator(target, qemu_options), str(install.tool(name))], "emulator"


def emulator(target: Target, options: list[str] = ()) -> list[str]:
    """qemu-user running the board's core with the board's C libraries (and any further options)."""
    name, sysroot, packages = EMULATORS[target.arch]
    qemu = system_tool(name, "qemu-user")
    if not Path(sysroot, "lib", "libc.so.6").exists():
        raise BenchError(f"the {target.arch} C libraries are missing", hint=f"apt-get install {packages}")
    return [qemu, "-cpu", target.core, "-L", sysroot, *options]
