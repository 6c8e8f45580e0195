"""`bela-iree runtime build`: the IREE runtime, its tools and runtime/'s library, for one board.

An install is a folder the board takes as it is (`BOARD_ROOT/libraries/iree`):

    include/   IREE's runtime headers (with the generated ones) and bela_iree/model.h
    lib/       the static libraries a Bela project links (IREE's, libbela_iree.a, libbela_iree_compat.a)
    bin/       iree-run-module, iree-benchmark-module, VERSION (the compiler release it is for)
    manifest.json   what it was built from and for, and the sha256 of every file

Installs are cached by (source, target, toolchain, options): a second build is a lookup. A
cross build needs IREE's host tools (flatcc, embed-data): they come from the host install,
built first from the same source.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import BelaIreeError
from ..pipeline import cache
from ..pipeline.elf_check import glibc_versions_needed
from ..pipeline.targets import get_target
from ..pipeline.tools import run_tool, run_tool_lines, venv_tool
from .source import RuntimeSource, compiler_release, resolve_source, runtime_cache_root
from .toolchain import OLDEST_GLIBC, Toolchain, toolchain_for

RUNTIME_LIBRARY = Path(__file__).resolve().parents[2] / "runtime"
# Our fixes to IREE's runtime source (unified diffs, applied in name order to a copy of the
# source tree made for each build; never to the shared unpacked source). Part of the cache key.
PATCHES = Path(__file__).resolve().parent / "patches"
MANIFEST = "manifest.json"
TOOLS = ("iree-run-module", "iree-benchmark-module")
HOST_TOOLS = ("iree-flatcc-cli", "iree-c-embed-data")   # what a cross build runs on this computer
LIBRARIES = ("iree_runtime_unified", "flatcc_parsing", "iree_hal_local_loaders_static_library_loader",
             "iree_hal_utils_caching_allocator")
# Only the runtime: the local-sync driver (Bela has one core), the loaders our targets use
# (system library for Bela's vmfb kernels, embedded ELF for aarch64 and x86, static for EmitC).
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DIREE_BUILD_COMPILER=OFF", "-DIREE_BUILD_TESTS=OFF",
    "-DIREE_BUILD_SAMPLES=OFF", "-DIREE_BUILD_BENCHMARKS=ON", "-DIREE_HAL_DRIVER_DEFAULTS=OFF",
    "-DIREE_HAL_DRIVER_LOCAL_SYNC=ON", "-DIREE_HAL_EXECUTABLE_LOADER_DEFAULTS=OFF",
    "-DIREE_HAL_EXECUTABLE_LOADER_SYSTEM_LIBRARY=ON", "-DIREE_HAL_EXECUTABLE_LOADER_EMBEDDED_ELF=ON",
    "-DIREE_HAL_EXECUTABLE_PLUGIN_DEFAULTS=OFF", "-DIREE_ENABLE_CPUINFO=OFF", "-DIREE_ENABLE_LIBBACKTRACE=OFF",
    # only flatcc and benchmark are needed of IREE's submodules
    "-DIREE_ERROR_ON_MISSING_SUBMODULES=OFF",
    # GCC 12 and clang both warn on a 32-bit shift in iree/base/alignment.h
    "-DIREE_ENABLE_WERROR_FLAG=OFF"]
# Raise LAYOUT when what an install holds changes (this file, or runtime/Makefile's library
# rules): cached installs are keyed by it and are then rebuilt.
LAYOUT = 2
CONFIGURE_TIMEOUT = 1800.0
BUILD_TIMEOUT = 3600.0


class RuntimeBuildError(BelaIreeError):
    stage = "setup"


class Reporter:
    """Progress of a build: `stage` names a step, `step` counts compiled files. Silent by default."""

    def stage(self, text: str) -> None:
        pass

    def step(self, done: int, total: int) -> None:
        pass


@dataclass(frozen=True)
class RuntimeInstall:
    folder: Path
    manifest: dict

    def tool(self, name: str) -> Path:
        return self.folder / "bin" / name

    def to_json(self, cached: bool, seconds: float) -> dict:
        m = self.manifest
        return {"target": m["target"], "arch": m["arch"], "dir": str(self.folder),
                "tools": {name: str(self.tool(name)) for name in TOOLS},
                "iree_commit": m["iree_commit"], "compiler_version": m["compiler_version"],
                "matches_compiler": m["matches_compiler"], "glibc": m["glibc"],
                "cached": cached, "seconds": round(seconds, 3), "warnings": runtime_warnings(m)}


def runtime_warnings(manifest: dict) -> list[str]:
    if manifest["matches_compiler"]:
        return []
    built = manifest["iree_commit"] or "an unknown commit"
    return [f"this runtime is built from IREE {built[:12]}, not the compiler's release "
            f"({manifest['compiler_version']}, {(manifest['compiler_commit'] or 'unknown')[:12]}): "
            "modules are checked by running a probe on it"]


def build_runtime(target_name: str, source: str | None = None, commit: str | None = None,
                  reporter: Reporter | None = None) -> dict:
    """Build (or find cached) the runtime for target_name; the `runtime build --json` object."""
    started = time.monotonic()
    install, cached = ensure_runtime(target_name, source, commit, reporter)
    return install.to_json(cached, time.monotonic() - started)


def ensure_runtime(target_name: str, source: str | None = None, commit: str | None = None,
                   reporter: Reporter | None = None) -> tuple[RuntimeInstall, bool]:
    reporter = reporter or Reporter()
    target = get_target(target_name)
    resolved = resolve_source(source, commit, progress=reporter.stage)
    toolchain = toolchain_for(target)
    folder = runtime_cache_root() / f"{target.name}-{runtime_key(resolved, target.name, toolchain)}"
    if (folder / MANIFEST).exists():
        return RuntimeInstall(folder, json.loads((folder / MANIFEST).read_text())), True
    host_tools = None
    if toolchain.cross:
        host, _ = ensure_runtime("host", source, commit, reporter)
        host_tools = host.folder / "bin"
    # one build per runtime at a time: a second process (a parallel test worker, a second
    # terminal) waits for the first and takes its result instead of building it again
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reporter.stage(f"waiting for another build of the {target.name} runtime to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / MANIFEST).exists():
            return RuntimeInstall(folder, json.loads((folder / MANIFEST).read_text())), True
        _build_and_install(resolved, target, toolchain, folder, host_tools, reporter)
    return RuntimeInstall(folder, json.loads((folder / MANIFEST).read_text())), False


def runtime_key(source: RuntimeSource, target: str, toolchain: Toolchain) -> str:
    ours = [p.read_bytes() for p in sorted((RUNTIME_LIBRARY / "src").glob("*.c"))]
    ours.append((RUNTIME_LIBRARY / "include/bela_iree/model.h").read_bytes())
    ours += [p.read_bytes() for p in _patches()]
    return cache.digest(source.id, target, toolchain.describe(), *CMAKE_OPTIONS, str(LAYOUT), *ours)[:16]


def _build_and_install(source: RuntimeSource, target, toolchain: Toolchain, folder: Path,
                       host_tools: Path | None, reporter: Reporter) -> None:
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".build-{target.name}-"))
    log = root / f"{folder.name}.log"
    log.unlink(missing_ok=True)
    try:
        build = work / "build"
        source_folder = _patched_source(source.folder, work / "source", log)
        options = list(CMAKE_OPTIONS)
        if toolchain.cross:
            toolchain_file = toolchain.write(work / "toolchain")
        compilers = toolchain.compilers(work / "toolchain")
        if toolchain.cross:
            compat = _compile_compat(work, compilers)
            options += [f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}",
                        f"-DIREE_HOST_BIN_DIR={host_tools}",
                        "-DCMAKE_EXE_LINKER_FLAGS=-s",   # no debug info: the board's disk is small
                        # every tool links the glibc compatibility functions (runtime/src/glibc_compat.c)
                        f"-DCMAKE_C_STANDARD_LIBRARIES={compat}", f"-DCMAKE_CXX_STANDARD_LIBRARIES={compat}"]
        env = {**os.environ, "PATH": f"{Path(venv_tool('cmake')).parent}{os.pathsep}{os.environ['PATH']}"}
        reporter.stage(f"configuring the IREE runtime for {target.name} ({toolchain.describe()})")
        _run([venv_tool("cmake"), "-G", "Ninja", "-S", str(source_folder), "-B", str(build), *options],
             log, env, CONFIGURE_TIMEOUT, reporter, f"configuring IREE's runtime for {target.name}")
        reporter.stage(f"building the IREE runtime for {target.name}")
        targets = [*LIBRARIES, *TOOLS, *(() if toolchain.cross else HOST_TOOLS)]
        _run([venv_tool("cmake"), "--build", str(build), "--target", *targets], log, env, BUILD_TIMEOUT, reporter,
             f"building IREE's runtime for {target.name}")
        reporter.stage("installing")
        staging = work / "install"
        _install(source, build, staging, targets)
        _build_runtime_library(target, staging, work, compilers, log)
        _write_manifest(source, target, toolchain, staging)
        if toolchain.cross:
            _check_glibc(staging)
        try:
            os.rename(staging, folder)
        except OSError:   # another build of the same key finished first: theirs is as good
            if not (folder / MANIFEST).exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _patches() -> list[Path]:
    return sorted(PATCHES.glob("*.patch"))


def _patched_source(folder: Path, copy: Path, log: Path) -> Path:
    """The source with our patches applied: a tree of hard links to the unpacked source, in which
    each file a patch touches is first replaced by a real copy (the shared source stays as it is)."""
    patches = _patches()
    if not patches:
        return folder
    shutil.copytree(folder, copy, copy_function=os.link, symlinks=True)
    for patch in patches:
        for line in patch.read_text().splitlines():
            if line.startswith("+++ b/"):
                target = copy / line[len("+++ b/"):].strip()
                data = target.read_bytes()
                target.unlink()
                target.write_bytes(data)
        result = run_tool(["patch", "-p1", "--forward", "--batch", "-d", str(copy), "-i", str(patch)],
                          timeout=60, log=log, stage="setup")
        if result.returncode != 0:
            raise RuntimeBuildError(f"cannot apply {patch.name} to IREE's runtime source",
                                    detail=result.stdout + result.stderr,
                                    hint="the patch was made for another IREE version: update it")
    return copy


def _run(argv: list[str], log: Path, env: dict, timeout: float, reporter: Reporter, what: str) -> None:
    def on_line(line: str) -> None:
        m = re.match(r"^\[(\d+)/(\d+)\]", line)
        if m:
            reporter.step(int(m.group(1)), int(m.group(2)))
    if run_tool_lines(argv, timeout=timeout, log=log, on_line=on_line, stage="setup", env=env) != 0:
        errors = [line for line in log.read_text().splitlines() if "error:" in line.lower()]
        raise RuntimeBuildError(f"{what} failed: {errors[0].strip()[:300] if errors else 'see the log'}",
                                detail=log.read_text()[-6000:], hint=f"the full log: {log}")


def _compile_compat(work: Path, compilers: dict) -> Path:
    (work / "compat").mkdir(parents=True)
    obj = work / "compat" / "glibc_compat.o"
    result = run_tool([compilers["CC"], "-O2", "-c", str(RUNTIME_LIBRARY / "src/glibc_compat.c"), "-o", str(obj)],
                      timeout=300, stage="setup")
    if result.returncode != 0:
        raise RuntimeBuildError(f"cannot compile runtime/src/glibc_compat.c: {result.stderr.strip()[:300]}")
    return obj


def _install(source: RuntimeSource, build: Path, staging: Path, targets: list[str]) -> None:
    include = staging / "include"
    for tree in (source.folder / "runtime/src", build / "runtime/src"):
        for header in (tree / "iree").rglob("*"):
            if header.suffix in (".h", ".inl", ".inc") and header.is_file():
                destination = include / header.relative_to(tree)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(header, destination)
    (include / "bela_iree").mkdir(parents=True)
    shutil.copy2(RUNTIME_LIBRARY / "include/bela_iree/model.h", include / "bela_iree/model.h")
    (staging / "lib").mkdir()
    for name in LIBRARIES:
        found = sorted(build.rglob(f"lib{name}.a"))
        if not found:
            raise RuntimeBuildError(f"the build made no lib{name}.a")
        shutil.copy2(found[0], staging / "lib")
    (staging / "bin").mkdir()
    for name in targets:
        if name in TOOLS or name in HOST_TOOLS:
            shutil.copy2(build / "tools" / name, staging / "bin" / name)
    (staging / "bin" / "VERSION").write_text(compiler_release()[0] + "\n")


def _build_runtime_library(target, staging: Path, work: Path, compilers: dict, log: Path) -> None:
    """runtime/'s libbela_iree.a with the board's loaders, and the glibc compatibility library."""
    loaders = "system static" if target.arch == "armv7" else "embedded static"
    out = work / "bela_iree"
    argv = ["make", "-C", str(RUNTIME_LIBRARY), f"IREE_RUNTIME_DIR={staging}", f"BUILD={out}",
            f"LOADERS={loaders}", f"CC={compilers['CC']}", f"AR={compilers['AR']}",
            f"{out}/libbela_iree.a", f"{out}/libbela_iree_compat.a"]
    result = run_tool(argv, timeout=600, log=work / "make.log", stage="setup")
    with open(log, "a") as f:
        f.write((work / "make.log").read_text())
    if result.returncode != 0:
        raise RuntimeBuildError(f"building runtime/ for {target.name} failed: {result.stderr.strip()[-300:]}",
                                detail=result.stderr)
    for name in ("libbela_iree.a", "libbela_iree_compat.a"):
        shutil.copy2(out / name, staging / "lib" / name)


def _write_manifest(source: RuntimeSource, target, toolchain: Toolchain, staging: Path) -> None:
    version, compiler_commit = compiler_release()
    files = {str(p.relative_to(staging)): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = {
        "target": target.name, "arch": target.arch, "toolchain": toolchain.describe(),
        "glibc": OLDEST_GLIBC if toolchain.cross else None,
        "iree_commit": source.commit, "iree_source": source.origin,
        "compiler_version": version, "compiler_commit": compiler_commit,
        "matches_compiler": bool(source.commit and source.commit == compiler_commit),
        "cmake_options": CMAKE_OPTIONS, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def _check_glibc(staging: Path) -> None:
    """Every program must start on the oldest Bela image: no glibc symbol newer than OLDEST_GLIBC."""
    oldest = tuple(int(x) for x in OLDEST_GLIBC.split("."))
    for program in sorted((staging / "bin").iterdir()):
        if program.name == "VERSION":
            continue
        newer = [v for v in glibc_versions_needed(program) if v > oldest]
        if newer:
            raise RuntimeBuildError(f"{program.name} needs glibc {'.'.join(map(str, max(newer)))}, newer than "
                                    f"the oldest Bela image's {OLDEST_GLIBC}: it would not start there")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
