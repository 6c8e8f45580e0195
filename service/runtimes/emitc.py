"""An EmitC module compiled here, for the board: module.c and its kernels as one static library.

IREE's module.c holds every weight as C source (tens of MB for basic_mlp); the Bela IDE would
compile it on a single-core Cortex-A8 with 512 MB. So `bela-iree build` compiles it on this
computer, with the board's toolchain (toolchain.py) against the board's runtime headers, and
the project links the result: the board compiles only the glue and render.cpp.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from ..pipeline import arm_fma, cache
from ..pipeline.targets import Target
from ..pipeline.tools import run_tool
from .build import RuntimeBuildError, ensure_runtime
from .toolchain import toolchain_for

LIBRARY = "libbela_iree_module.a"
COMPILE_TIMEOUT = 1800.0   # a 60 MB module.c takes minutes


def build_emitc_library(folder: Path, target: Target) -> Path:
    """folder's module.c and kernels.o (from `compile --format emitc`) as folder/LIBRARY, cached."""
    install, _ = ensure_runtime(target.name)
    module, kernels = folder / "module.c", folder / "kernels.o"
    objects = [kernels] if kernels.exists() else []   # vmvx: no kernels, the module is all there is
    bela_fmaf = target.arch == "armv7" and bool(objects)   # the Bela kernels' NEON routines (arm_fma.py)
    key = cache.digest(module.read_bytes(), *(o.read_bytes() for o in objects), target.name, install.folder.name,
                       *(source.read_bytes() for source in arm_fma.SOURCES if bela_fmaf))
    store = cache.Cache("emitc-libraries")
    entry = store.get(key)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="bela-iree-emitc-") as tmp:
            work = Path(tmp)
            if bela_fmaf:
                objects = arm_fma.static_kernels_with_fmaf(kernels, work)
            toolchain = toolchain_for(target)
            compilers = toolchain.compilers(work / "toolchain")
            out = work / "out"
            out.mkdir()
            argv = [compilers["CC"], "-O2", "-w", "-std=gnu11", "-DEMITC_IMPLEMENTATION",
                    "-DIREE_ALLOCATOR_SYSTEM_CTL=iree_allocator_libc_ctl", f"-I{install.folder / 'include'}",
                    "-c", str(module), "-o", str(work / "module.o")]
            _run(argv, work, "compiling the EmitC module")
            _run([compilers["AR"], "rcs", str(out / LIBRARY), str(work / "module.o"), *map(str, objects)], work,
                 "archiving the EmitC module")
            entry = store.put(key, out)
    shutil.copy(entry / LIBRARY, folder / LIBRARY)
    return folder / LIBRARY


def library_query_name(kernels_header: Path) -> str | None:
    """The static library's query function declared in kernels.h: `module_linked_library_query`
    when several executables were linked, else the one executable's (`main$async_dispatch_0_library_query`)."""
    match = re.search(r"^([\w$]+_library_query)\($", kernels_header.read_text(), re.M)
    return match.group(1) if match else None



def _run(argv: list[str], work: Path, what: str) -> None:
    result = run_tool(argv, timeout=COMPILE_TIMEOUT, log=work / "emitc.log", stage="compile")
    if result.returncode != 0:
        raise RuntimeBuildError(f"{what} failed: {result.stderr.strip()[-300:]}", stage="compile",
                                detail=result.stderr[-4000:])
