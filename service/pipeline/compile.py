"""Compile: model file -> exported MLIR (cached) -> iree-compile for one target (cached).

`compile_model` is what `bela-iree compile` and every rebuild call. The export runs in a child
process with a time limit (the CLI never imports torch); iree-compile runs with a time limit
and its errors are cut down to the op and the model line.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CompileError, ExportError
from ..modelfile import model_name
from . import cache, tuning_spec
from .compile_errors import compile_error
from .elf_check import inspect_armv7_kernels
from .emitc_fix import EMITC_FIX, fix_import_layout
from .targets import Target
from .tools import iree_compile, run_tool
from .variants import VARIANTS, fastest, measured_table

EXPORT_TIMEOUT = 300.0
COMPILE_TIMEOUT = 300.0
REFERENCE_FILES = ["export.json", "inputs.npz", "expected.npy"]
KERNELS_PLACEHOLDER = "@KERNELS@"


@dataclass
class CompileResult:
    model: str
    target: str
    format: str
    backend: str
    artifacts: list[Path]
    flags: list[str]
    seconds: dict
    cached: bool
    export: dict
    warnings: list[str] = field(default_factory=list)
    variant: str = "default"          # which flag set (see bench/tuning.py)
    tuning: dict | None = None        # each variant's measured median ms, or why it failed

    def to_json(self) -> dict:
        return {"model": self.model, "target": self.target, "format": self.format, "backend": self.backend,
                "artifacts": [str(p) for p in self.artifacts], "flags": self.flags, "seconds": self.seconds,
                "cached": self.cached, "warnings": self.warnings, "rewrites": self.export["rewrites"],
                "inputs": self.export["inputs"], "output": self.export["output"],
                "iree_version": cache.iree_version(), "variant": self.variant, "tuning": self.tuning}


def export_in_child(model_file: Path, out_dir: Path, unroll_loops: bool, timeout: float) -> dict:
    """Export in a one-shot child process (the CLI never imports torch itself)."""
    argv = [sys.executable, "-W", "ignore", "-m", "service.pipeline.export", str(model_file), str(out_dir),
            *(["--unroll-loops"] if unroll_loops else [])]
    result = run_tool(argv, timeout=timeout, stage="export")
    lines = result.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise ExportError(f"the export process died (exit code {result.returncode})", file=str(model_file),
                          detail=result.stderr[-4000:]) from None
    if "error" in reply:
        raise ExportError.from_json(reply["error"], detail=reply.get("detail"))
    return reply


def export_cached(model_file: Path, timeout: float = EXPORT_TIMEOUT, unroll_loops: bool = False,
                  exporter=export_in_child) -> tuple[Path, dict, bool]:
    """The export folder for this model source; on a miss, `exporter` (a one-shot child process,
    or the service's warm worker) exports it."""
    store = cache.Cache("export")
    key = cache.export_key(model_file, "unrolled" if unroll_loops else "")
    hit = store.get(key)
    if hit:
        return hit, json.loads((hit / "export.json").read_text()), True
    with tempfile.TemporaryDirectory(prefix="bela-iree-export-") as tmp:
        info = exporter(model_file, Path(tmp), unroll_loops, timeout)
        entry = store.put(key, Path(tmp))
    return entry, info, False


def compile_flags(target: Target, fmt: str, backend: str, extra: tuple[str, ...] = ()) -> list[str]:
    flags = target.flags(backend) + list(extra)
    # the packed matrix-vector products' config (tuning_spec.py); with data tiling IREE has
    # already retiled them its own way when the spec is read, and the config no longer applies
    if backend == "llvm-cpu" and "--iree-opt-data-tiling" not in extra:
        flags += tuning_spec.spec_flags(target)
    if fmt == "emitc":
        return flags + target.emitc_flags(backend, Path(KERNELS_PLACEHOLDER))
    return flags + (target.vmfb_link_flags() if backend == "llvm-cpu" else [])


def artifact_names(fmt: str, backend: str) -> list[str]:
    if fmt == "vmfb":
        return ["model.vmfb"]
    return ["module.c", "kernels.o", "kernels.h"] if backend == "llvm-cpu" else ["module.c"]


def compile_exported(export_dir: Path, info: dict, target: Target, fmt: str, backend: str,
                     timeout: float = COMPILE_TIMEOUT, extra_flags: tuple[str, ...] = ()) -> tuple[Path, list[str], bool]:
    flags = compile_flags(target, fmt, backend, extra_flags)
    mlir = export_dir / "model.mlirbc"
    store = cache.Cache("compile")
    key = cache.compile_key(mlir.read_bytes(), flags + ([EMITC_FIX] if fmt == "emitc" else []))
    hit = store.get(key)
    if hit:
        return hit, flags, True
    with tempfile.TemporaryDirectory(prefix="bela-iree-compile-") as tmp:
        work = Path(tmp)
        names = artifact_names(fmt, backend)
        argv = [iree_compile(), str(mlir), *[f.replace(KERNELS_PLACEHOLDER, str(work / "kernels.o")) for f in flags],
                "-o", str(work / names[0])]
        result = run_tool(argv, timeout=timeout, log=work / "compile.log", stage="compile")
        if result.returncode != 0:
            raise compile_error(result.stderr, Path(info["model_file"]))
        if target.arch == "armv7" and fmt == "vmfb" and backend == "llvm-cpu":
            _check_armv7(work / names[0], work)
        if fmt == "emitc":   # IREE 3.13 lays out import calls for 64-bit only (emitc_fix.py)
            module = work / "module.c"
            module.write_text(fix_import_layout(module.read_text()))
        for name in REFERENCE_FILES:
            shutil.copy(export_dir / name, work / name)
        entry = store.put(key, work)
    return entry, flags, False


def compile_model(model_file: Path, target: Target, fmt: str, backend: str, out_dir: Path,
                  timeout: float = COMPILE_TIMEOUT, exporter=export_in_child, on_stage=lambda stage: None,
                  export_timeout: float = EXPORT_TIMEOUT, variant: str | None = None) -> CompileResult:
    """`variant` names one of variants.py's flag sets; None: the one measured fastest for this
    model and target, if it was measured (bench/tuning.py), else IREE's defaults."""
    started = time.perf_counter()
    on_stage("exporting")
    # EmitC cannot keep a recurrent layer's time loop (see rewrites/recurrent.py): unroll it there
    export_dir, info, export_cached_hit = export_cached(model_file, export_timeout, fmt == "emitc", exporter)
    exported = time.perf_counter()
    table = measured_table(export_dir, target, backend) if variant is None and fmt == "vmfb" else None
    variant = variant or fastest(table)
    on_stage("compiling")
    entry, flags, compile_cached_hit = compile_exported(export_dir, info, target, fmt, backend, timeout,
                                                        VARIANTS[variant])
    names = artifact_names(fmt, backend)
    artifacts = cache.publish(entry, out_dir, names + REFERENCE_FILES + ["compile.log"])[:len(names)]
    return CompileResult(
        model=model_name(model_file), target=target.name, format=fmt, backend=backend, artifacts=artifacts,
        flags=[f.replace(KERNELS_PLACEHOLDER, str(out_dir / "kernels.o")) for f in flags],
        seconds={"export": round(exported - started, 3), "compile": round(time.perf_counter() - exported, 3)},
        cached=export_cached_hit and compile_cached_hit, export=info, variant=variant, tuning=table)


def _check_armv7(vmfb: Path, work: Path) -> None:
    report = inspect_armv7_kernels(vmfb, work)
    (work / "kernels.so").unlink()
    if not report.ok:
        raise CompileError("the Bela kernel library would not load on the board: " + "; ".join(report.problems()),
                           hint="report this to bela-iree with the compile log")
