"""Compile: model file -> exported MLIR (cached) -> iree-compile for one target (cached).

`compile_model` is what `bela-iree compile` and every rebuild call. The export runs in a child
process with a time limit (the CLI never imports torch); iree-compile runs with a time limit
and its errors are cut down to the op and the model line.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import CompileError, ExportError
from .. import model_reads
from ..modelfile import model_name
from . import cache, tuning_spec
from .compile_errors import compile_error
from .elf_check import inspect_armv7_kernels
from .kernel_report import check_bela_kernels
from .emitc_fix import EMITC_FIX, fix_import_layout
from .inline_hal import FIX_VERSION as INLINE_FIX, INLINE_FLAGS, keep_constants, phase_argvs as inline_phases, \
    preprocess_argv, CONFIGURED as INLINE_CONFIGURED
from .targets import Target
from .tools import iree_compile, iree_opt, run_tool
from .variants import VARIANTS, fastest, measured_table

EXPORT_TIMEOUT = 300.0
COMPILE_TIMEOUT = 300.0
REFERENCE_FILES = ["export.json", "inputs.npz", "expected.npy"]
OPTIONAL_REFERENCE_FILES = ["stream.npz"]   # a stateful model's streaming reference


KERNELS_PLACEHOLDER = "@KERNELS@"


def reference_files(folder: Path) -> list[str]:
    return REFERENCE_FILES + [name for name in OPTIONAL_REFERENCE_FILES if (folder / name).exists()]


@dataclass(frozen=True)
class CompileOptions:
    """How to compile one model: everything a build, the CLI or the tuner decides, in one value
    passed down whole (frozen: no step changes it for the next). `variant` names one of
    variants.py's flag sets; None: the one measured fastest for this model and target, if it was
    measured (bench/tuning.py), else IREE's defaults."""
    target: Target
    format: str = "vmfb"
    backend: str = "llvm-cpu"
    variant: str | None = None
    compile_timeout: float = COMPILE_TIMEOUT
    export_timeout: float = EXPORT_TIMEOUT
    block: int | None = None          # frames per call, for a block-flexible model; None: its own
    block_fallback: bool = False      # a model that takes only its own block is built at it (a project's
                                      # `block` is for block-flexible models) instead of refused
    exporter: Callable = field(default=None, compare=False)   # None: a one-shot child process

    def but(self, **changes) -> "CompileOptions":
        return replace(self, **changes)


@dataclass(frozen=True)
class CompileResult:
    """One compiled model (and, from a project build, where it now lives); `to_json` is the one
    place it becomes the `compile`/`build --json` object."""
    model: str
    target: str
    format: str
    backend: str
    artifacts: tuple[Path, ...]
    flags: tuple[str, ...]
    seconds: dict
    cached: bool
    export: dict
    warnings: tuple[str, ...] = ()
    variant: str = "default"          # which flag set (see bench/tuning.py)
    tuning: dict | None = None        # each variant's measured median ms, or why it failed
    project: Path | None = None       # set by a project build (project.py)

    @property
    def folder(self) -> Path:
        return self.artifacts[0].parent

    def but(self, **changes) -> "CompileResult":
        return replace(self, **changes)

    def to_json(self) -> dict:
        data = {"model": self.model, "target": self.target, "format": self.format, "backend": self.backend,
                "artifacts": [str(p) for p in self.artifacts], "flags": list(self.flags), "seconds": self.seconds,
                "cached": self.cached, "warnings": list(self.warnings), "rewrites": self.export["rewrites"],
                "inputs": self.export["inputs"], "output": self.export["output"],
                "iree_version": cache.iree_version(), "variant": self.variant, "tuning": self.tuning}
        if self.project:
            data["project"] = str(self.project)
        return data


def export_in_child(model_file: Path, out_dir: Path, unroll_loops: bool, timeout: float,
                    block: int | None = None) -> dict:
    """Export in a one-shot child process (the CLI never imports torch itself)."""
    argv = [sys.executable, "-W", "ignore", "-m", "service.pipeline.export", str(model_file), str(out_dir),
            *(["--unroll-loops"] if unroll_loops else []), *(["--block", str(block)] if block else [])]
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
                  exporter=None, block: int | None = None) -> tuple[Path, dict, bool]:
    """The export folder for this model source (at `block` frames per call, if given); on a miss,
    `exporter` (a one-shot child process, or the service's warm worker) exports it."""
    store = cache.Cache("export")
    source_key = cache.export_key(model_file, ("unrolled" if unroll_loops else "") + (f"block{block}" if block else ""))
    known = store.known_reads(source_key)   # the files it read last time, as they are now
    if known is not None:
        paths = model_reads.absolute([{"path": p} for p in known], model_file)
        hit = store.get(cache.with_reads(source_key, {str(p): model_reads.file_sha256(p) for p in paths}))
        if hit:
            return hit, json.loads((hit / "export.json").read_text()), True
    with tempfile.TemporaryDirectory(prefix="bela-iree-export-") as tmp:
        at_block = {"block": block} if block else {}
        info = (exporter or export_in_child)(model_file, Path(tmp), unroll_loops, timeout, **at_block)
        reads = model_reads.absolute(info.get("reads"), model_file)   # keyed as read, not as now
        store.remember_reads(source_key, [r["path"] for r in info.get("reads") or []])
        entry = store.put(cache.with_reads(source_key, {str(p): sha for p, sha in reads.items()}), Path(tmp), move=True)
    return entry, info, False


def compile_flags(target: Target, fmt: str, backend: str, extra: tuple[str, ...] = ()) -> list[str]:
    flags = target.flags(backend) + list(extra)
    # the packed matrix-vector products' config (tuning_spec.py); with data tiling IREE has
    # already retiled them its own way when the spec is read, and the config no longer applies
    if backend == "llvm-cpu" and "--iree-opt-data-tiling" not in extra:
        flags += tuning_spec.spec_flags(target)
    if fmt == "emitc":
        return flags + target.emitc_flags(backend, Path(KERNELS_PLACEHOLDER))
    if backend == "llvm-cpu" and target.inline_hal:   # a dispatch is a call (inline_hal.py)
        flags += list(INLINE_FLAGS)
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
    inline = fmt == "vmfb" and INLINE_FLAGS[-1] in flags
    key = cache.compile_key(mlir.read_bytes(), flags + ([EMITC_FIX] if fmt == "emitc" else [])
                            + ([INLINE_FIX] if inline else []))
    hit = store.get(key)
    if hit:   # the flags it was built with (an inline build may have fallen back to the async HAL)
        built = hit / BUILT_FLAGS
        return hit, (json.loads(built.read_text()) if built.exists() else flags), True
    with tempfile.TemporaryDirectory(prefix="bela-iree-compile-") as tmp:
        work = Path(tmp)
        names = artifact_names(fmt, backend)
        if inline:
            _compile_inline(flags, mlir, work, names[0], timeout, info)
            if target.arch == "armv7" and needs_preprocessing(work / names[0]):
                flags = [f for f in flags if f not in INLINE_FLAGS]
                inline = False
        argv = [iree_compile(), str(mlir), *[f.replace(KERNELS_PLACEHOLDER, str(work / "kernels.o")) for f in flags],
                "-o", str(work / names[0])]
        if not inline:
            result = run_tool(argv, timeout=timeout, log=work / "compile.log", stage="compile")
            if result.returncode != 0:
                raise compile_error(result.stderr, Path(info["model_file"]))
        if target.arch == "armv7" and fmt == "vmfb" and backend == "llvm-cpu":
            _check_armv7(work / names[0], work)
        if fmt == "emitc":   # IREE 3.13 lays out import calls for 64-bit only (emitc_fix.py)
            module = work / "module.c"
            module.write_text(fix_import_layout(module.read_text()))
        for name in reference_files(export_dir):
            shutil.copy(export_dir / name, work / name)
        (work / BUILT_FLAGS).write_text(json.dumps(flags))
        entry = store.put(key, work, move=True)
    return entry, flags, False


BUILT_FLAGS = "flags.json"
# IREE's approximations of tanh, exp, sin... fuse multiply-adds: a kernel calling fmaf did not get
# Bela's math rewrite (arm_math.py), which turns them into NEON multiplies and adds
_REWRITTEN_CALLS = {"fmaf"}


def needs_preprocessing(vmfb: Path) -> bool:
    """Whether an armv7 inline-HAL build lost Bela's math rewrite (IREE's inline pipeline runs no
    `--iree-hal-preprocess-executables-with` step; inline_hal.preprocess_argv runs it first, so this
    is a safety net): IREE's scalar approximations call fmaf per lane (the starter's tanh: 3.9 k ->
    19.5 k kernel instructions at 16 frames). Such a model keeps the async HAL on Bela."""
    from .kernel_report import kernel_report
    return any(set(d["calls"]) & _REWRITTEN_CALLS for d in kernel_report(vmfb))


def compile_model(model_file: Path, options: CompileOptions, out_dir: Path,
                  on_stage=lambda stage: None) -> CompileResult:
    """Export (cached) and compile (cached) model_file as `options` say, into out_dir."""
    started = time.perf_counter()
    target, fmt, backend = options.target, options.format, options.backend
    on_stage("exporting")
    export_dir, info, export_cached_hit, warnings = _export_at_block(model_file, options)
    exported = time.perf_counter()
    table = measured_table(export_dir, target, backend) if options.variant is None and fmt == "vmfb" else None
    variant = options.variant or fastest(table)
    on_stage("compiling")
    entry, flags, compile_cached_hit = compile_exported(export_dir, info, target, fmt, backend,
                                                        options.compile_timeout, VARIANTS[variant])
    names = artifact_names(fmt, backend)
    artifacts = cache.publish(entry, out_dir, names + reference_files(entry) + ["compile.log"])[:len(names)]
    return check_bela_kernels(CompileResult(   # per-dispatch NEON/VFP mix and C library calls (kernel_report.py)
        model=model_name(model_file), target=target.name, format=fmt, backend=backend, artifacts=tuple(artifacts),
        flags=tuple(f.replace(KERNELS_PLACEHOLDER, str(out_dir / "kernels.o")) for f in flags),
        seconds={"export": round(exported - started, 3), "compile": round(time.perf_counter() - exported, 3)},
        cached=export_cached_hit and compile_cached_hit, export=info, variant=variant, tuning=table,
        warnings=warnings))


def _export_at_block(model_file: Path, options: CompileOptions) -> tuple[Path, dict, bool, tuple[str, ...]]:
    """export_cached at options.block; with block_fallback, a model that takes only its own block
    is exported at that, and a warning says so (the project's block is for block-flexible models)."""
    # EmitC cannot keep a recurrent layer's time loop (see rewrites/recurrent.py): unroll it there
    unroll = options.format == "emitc"
    try:
        return (*export_cached(model_file, options.export_timeout, unroll, options.exporter, options.block), ())
    except ExportError as e:
        if not (options.block_fallback and options.block and e.stage == "block"):
            raise
        why = e.message
    export_dir, info, hit = export_cached(model_file, options.export_timeout, unroll, options.exporter)
    return export_dir, info, hit, (f"block = {options.block} in bela-iree.toml is for block-flexible models: this "
                                   f"one takes only {info['block_size']}-frame blocks, so it was built at "
                                   f"{info['block_size']} ({why})",)


def _compile_inline(flags: list[str], mlir: Path, work: Path, name: str, timeout: float, info: dict) -> None:
    """iree-compile to the stream phase, the constants kept (inline_hal.py), then on to the vmfb."""
    stream = work / "stream.mlir"
    to_stream, from_stream = inline_phases(iree_compile(), mlir, flags, stream, work / name)
    preprocess = preprocess_argv(iree_opt(), flags, stream)
    for argv in (to_stream, preprocess, from_stream):
        if argv is None:
            continue
        result = run_tool(argv, timeout=timeout, log=work / "compile.log", stage="compile")
        if result.returncode != 0:
            raise compile_error(result.stderr, Path(info["model_file"]))
        if argv is to_stream:
            stream.write_text(keep_constants(stream.read_text())[0])
        elif argv is preprocess:
            os.replace(work / INLINE_CONFIGURED, stream)
    stream.unlink()


def _check_armv7(vmfb: Path, work: Path) -> None:
    report = inspect_armv7_kernels(vmfb, work)
    (work / "kernels.so").unlink()
    if not report.ok:
        raise CompileError("the Bela kernel library would not load on the board: " + "; ".join(report.problems()),
                           hint="report this to bela-iree with the compile log")
