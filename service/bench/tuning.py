"""Measuring, per model and target, which of pipeline/variants.py's flag sets is fastest.

Each variant is compiled (through the compile cache) and timed with iree-benchmark-module on
the target, the variants taking turns over a few rounds (a shared machine's slow spells then hit
every variant alike); the lowest lower quartile wins. The table is stored by the exported MLIR, the
target, the back end and the IREE version, so a model is measured once and every later build
of it uses the winner. Measured where the target runs for real: natively for `host`; emulated
timings say nothing about a board, so ARM targets keep the default.
"""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from ..errors import BelaIreeError, ToolTimeout
from ..pipeline.compile import CompileResult, compile_model, export_cached
from ..pipeline.targets import Target
from ..pipeline.variants import VARIANTS, measured_table, table_path
from .bench import _benchmark
from .measure import benchmark_argv, repetitions_for
from .run import input_files
from .runtime_tools import tool_command

ROUNDS = 4            # each variant's turn comes this many times...
ROUND_SECONDS = 0.4   # ...for about this long (sized from a first short probe)
PROBE_CALLS = 5


def measured_here(target: Target) -> bool:
    return target.arch == "x86_64"


def _call_times(compiled: CompileResult, target: Target, inputs: list[str], calls: int) -> list[float]:
    prefix, _ = tool_command(target, "iree-benchmark-module")
    module = str(compiled.artifacts[0].parent / "model.vmfb")
    return _benchmark(prefix + benchmark_argv(module, inputs, calls, dispatches=False)).latencies_ms


def _lower_quartile(times: list[float]) -> float:
    return statistics.quantiles(times, n=4)[0] if len(times) > 1 else times[0]


def measure_variants(model_file: Path, target: Target, backend: str, options: dict) -> tuple[dict, bool]:
    """{variant: {"median_ms", "lower_quartile_ms"} or {"error"}}, and whether a variant timed out (then the table
    says nothing final about it and is not remembered)."""
    table, compiled, timed_out = {}, {}, False
    with tempfile.TemporaryDirectory(prefix="bela-iree-variants-") as tmp:
        for name in VARIANTS:
            try:
                compiled[name] = compile_model(model_file, target, "vmfb", backend, Path(tmp) / name,
                                               variant=name, **options)
            except ToolTimeout as e:
                table[name], timed_out = {"error": e.message[:300]}, True
            except BelaIreeError as e:  # a variant that does not compile is just not chosen
                table[name] = {"error": e.message[:300]}
        any_folder = next(iter(compiled.values())).artifacts[0].parent if compiled else None
        inputs = [str(p) for p in input_files(any_folder, Path(tmp))] if any_folder else []
        times, calls = {name: [] for name in compiled}, {}
        for round_ in range(ROUNDS + 1):
            for name in list(times):
                try:
                    measured = _call_times(compiled[name], target, inputs, calls.get(name, PROBE_CALLS))
                except BelaIreeError as e:  # nor is one that does not run
                    table[name] = {"error": e.message[:300]}
                    del times[name]
                    continue
                if round_ == 0:  # the probe: warms up and sizes the rounds
                    calls[name] = repetitions_for(statistics.median(measured), ROUND_SECONDS)
                else:
                    times[name] += measured
        # the choice goes by the lower quartile: a shared machine's slow spells inflate the upper half
        table.update({name: {"median_ms": statistics.median(t), "lower_quartile_ms": _lower_quartile(t)}
                      for name, t in times.items()})
    return {name: table[name] for name in VARIANTS}, timed_out


def needs_tuning(model_file: Path, target: Target, fmt: str, backend: str, **export_options) -> bool:
    if fmt != "vmfb" or backend != "llvm-cpu" or not measured_here(target):
        return False
    export_dir, _, _ = export_cached(model_file, **export_options)
    return measured_table(export_dir, target, backend) is None


def tune(model_file: Path, target: Target, backend: str = "llvm-cpu", **options) -> dict:
    """Measure the variants (unless already measured) and store the table; returns it."""
    export_dir, _, _ = export_cached(model_file)
    table = measured_table(export_dir, target, backend)
    if table is None:
        table, timed_out = measure_variants(model_file, target, backend, options)
        if not timed_out and "median_ms" in table["default"]:
            path = table_path(export_dir, target, backend)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(table, indent=1))
    return table


def compile_tuned(model_file: Path, target: Target, out_dir: Path, backend: str = "llvm-cpu", **options) -> CompileResult:
    """compile_model with the fastest variant for this model on this target (vmfb), measured now
    if it never was."""
    if backend != "llvm-cpu" or not measured_here(target):
        return compile_model(model_file, target, "vmfb", backend, out_dir, **options)
    measured_now = needs_tuning(model_file, target, "vmfb", backend)
    tune(model_file, target, backend, **options)
    result = compile_model(model_file, target, "vmfb", backend, out_dir, **options)
    result.cached = result.cached and not measured_now
    return result
