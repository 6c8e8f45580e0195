"""Choosing, per model and target, the fastest of a few iree-compile flag sets, by measuring.

IREE's best flags differ by model: data tiling speeds up matmuls and slows some other
kernels; microkernels help some shapes. Each variant is compiled (through the compile cache)
and timed with iree-benchmark-module on the target, the variants taking turns over a few rounds
(a shared machine's slow spells then hit every variant alike); the lowest median wins. The measurements are
cached by the exported MLIR, the target's flags and the IREE version, so a model is tuned once.
Measured where the target runs for real: natively for `host` (and on a board, given one);
emulated timings say nothing about a board, so ARM targets without a board keep the default.
"""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from ..errors import BelaIreeError, ToolTimeout
from ..pipeline import cache
from ..pipeline.compile import CompileResult, compile_model, export_cached
from ..pipeline.targets import Target
from .bench import _benchmark
from .measure import benchmark_argv
from .run import input_files
from .runtime_tools import tool_command

# data tiling packs large operands into vectors and stack buffers beyond IREE's default
# guards on some models (resnet_1d's im2col); those guards are relaxed with it
DATA_TILING = ("--iree-opt-data-tiling", "--iree-llvmcpu-fail-on-large-vector=false",
               "--iree-llvmcpu-stack-allocation-limit=1048576")
VARIANTS = {
    "default": (),
    "data-tiling": DATA_TILING,
    "ukernels": ("--iree-llvmcpu-enable-ukernels=all",),
    "data-tiling+ukernels": DATA_TILING + ("--iree-llvmcpu-enable-ukernels=all",),
}
CALLS = 15   # per variant and round
ROUNDS = 3


def measured_here(target: Target) -> bool:
    return target.arch == "x86_64"


def _call_times(compiled: CompileResult, target: Target, inputs: list[str]) -> list[float]:
    prefix, _ = tool_command(target, "iree-benchmark-module")
    module = str(compiled.artifacts[0].parent / "model.vmfb")
    return _benchmark(prefix + benchmark_argv(module, inputs, CALLS, dispatches=False)).latencies_ms


def measure_variants(model_file: Path, target: Target, backend: str, options: dict) -> tuple[dict, bool]:
    """{variant: {"median_ms"} or {"error"}}, and whether a variant timed out (then the table
    says nothing final about it and is not remembered)."""
    table, compiled, timed_out = {}, {}, False
    with tempfile.TemporaryDirectory(prefix="bela-iree-variants-") as tmp:
        for name, flags in VARIANTS.items():
            try:
                compiled[name] = compile_model(model_file, target, "vmfb", backend, Path(tmp) / name,
                                               extra_flags=flags, **options)
            except ToolTimeout as e:
                table[name], timed_out = {"error": e.message[:300]}, True
            except BelaIreeError as e:  # a variant that does not compile is just not chosen
                table[name] = {"error": e.message[:300]}
        any_folder = next(iter(compiled.values())).artifacts[0].parent if compiled else None
        inputs = [str(p) for p in input_files(any_folder, Path(tmp))] if any_folder else []
        times = {name: [] for name in compiled}
        for _ in range(ROUNDS):
            for name in list(times):
                try:
                    times[name] += _call_times(compiled[name], target, inputs)
                except BelaIreeError as e:  # nor is one that does not run
                    table[name] = {"error": e.message[:300]}
                    del times[name]
        table.update({name: {"median_ms": statistics.median(t)} for name, t in times.items()})
    return {name: table[name] for name in VARIANTS}, timed_out


def compile_tuned(model_file: Path, target: Target, out_dir: Path, backend: str = "llvm-cpu", **options) -> CompileResult:
    """compile_model with the fastest variant for this model on this target (vmfb)."""
    if backend != "llvm-cpu" or not measured_here(target):
        return compile_model(model_file, target, "vmfb", backend, out_dir, **options)
    export_dir, _, _ = export_cached(model_file)
    key = cache.digest((export_dir / "model.mlirbc").read_bytes(), target.name, backend, cache.iree_version(),
                       json.dumps([VARIANTS, ROUNDS]))
    store = cache.cache_root() / "tuning" / f"{key}.json"
    table = json.loads(store.read_text()) if store.exists() else None
    measured_now = table is None
    if table is None:
        table, timed_out = measure_variants(model_file, target, backend, options)
        if not timed_out and "median_ms" in table["default"]:
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_text(json.dumps(table, indent=1))
    timed = {name: row["median_ms"] for name, row in table.items() if "median_ms" in row}
    best = min(timed, key=timed.get) if timed else "default"
    result = compile_model(model_file, target, "vmfb", backend, out_dir, extra_flags=VARIANTS[best], **options)
    result.variant, result.tuning = best, table
    result.cached = result.cached and not measured_now
    return result
