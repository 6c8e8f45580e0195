"""Measuring, per model and target, which of pipeline/variants.py's flag sets is fastest.

Each variant is compiled (through the compile cache) and timed with iree-benchmark-module on
the target, the variants taking turns over a few rounds (a shared machine's slow spells then hit
every variant alike); the lowest median wins. The table is stored by the exported MLIR, the
target, the back end and the IREE version, so a model is measured once and every later build
of it uses the winner. Measured where the target runs for real: natively for `host`; emulated
timings say nothing about a board, so ARM targets keep the default.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from ..errors import BelaIreeError, BoardError, ToolTimeout
from ..pipeline.compile import CompileOptions, CompileResult, compile_model, export_cached
from ..pipeline.targets import Target
from ..pipeline.variants import VARIANTS, measured_table, table_path
from .counted_tuning import compile_counted, counts_here
from .measure import benchmark_argv, repetitions_for, run_benchmark
from .run import input_files
from .runtime_tools import tool_command

ROUNDS = 4            # each variant's turn comes this many times...
ROUND_SECONDS = 0.4   # ...for about this long (sized from a first short probe)
PROBE_CALLS = 5


def measured_here(target: Target) -> bool:
    return target.arch == "x86_64"


def compile_variants(model_file: Path, options: CompileOptions, folder: Path) -> tuple[dict[str, CompileResult], dict, bool]:
    """Every variant compiled into folder/NAME: the results, {name: {"error"}} for those that did
    not compile, and whether one timed out (then the table says nothing final about it)."""
    compiled, errors, timed_out = {}, {}, False
    for name in VARIANTS:
        try:
            compiled[name] = compile_model(model_file, options.but(format="vmfb", variant=name), folder / name)
        except ToolTimeout as e:
            errors[name], timed_out = {"error": e.message[:300]}, True
        except BelaIreeError as e:  # a variant that does not compile is just not chosen
            errors[name] = {"error": e.message[:300]}
    return compiled, errors, timed_out


async def measure_rounds(names: list[str], timer) -> tuple[dict[str, list[float]], dict]:
    """Per-call ms of each variant, in turns: a short probe (warm-up, and how many calls make a
    round of about ROUND_SECONDS), then ROUNDS rounds. `await timer(name, calls)` times one run."""
    times, calls, errors = {name: [] for name in names}, {}, {}
    for round_ in range(ROUNDS + 1):
        for name in list(times):
            try:
                measured = await timer(name, calls.get(name, PROBE_CALLS))
            except BoardError:
                raise  # says nothing about the variant
            except BelaIreeError as e:  # a variant that does not run is not chosen
                errors[name] = {"error": e.message[:300]}
                del times[name]
                continue
            if round_ == 0:
                calls[name] = repetitions_for(statistics.median(measured), ROUND_SECONDS)
            else:
                times[name] += measured
    return times, errors


def summarize(times: dict[str, list[float]]) -> dict:
    return {name: {"median_ms": statistics.median(t)} for name, t in times.items()}


def store_table(export_dir: Path, target: Target, backend: str, table: dict, timed_out: bool) -> dict:
    """The table in VARIANTS' order, remembered unless incomplete (a timeout, or no default)."""
    table = {name: table[name] for name in VARIANTS}
    if not timed_out and "median_ms" in table["default"]:
        path = table_path(export_dir, target, backend)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=1))
    return table


def measure_variants(model_file: Path, options: CompileOptions) -> tuple[dict, bool]:
    """{variant: {"median_ms"} or {"error"}} measured here, and whether a variant timed out."""
    prefix, _ = tool_command(options.target, "iree-benchmark-module")
    with tempfile.TemporaryDirectory(prefix="bela-iree-variants-") as tmp:
        compiled, table, timed_out = compile_variants(model_file, options, Path(tmp))
        any_folder = next(iter(compiled.values())).folder if compiled else None
        inputs = [str(p) for p in input_files(any_folder, Path(tmp))] if any_folder else []

        async def timer(name: str, calls: int) -> list[float]:
            module = str(compiled[name].folder / "model.vmfb")
            return run_benchmark(prefix + benchmark_argv(module, inputs, calls, dispatches=False)).latencies_ms
        times, errors = asyncio.run(measure_rounds(list(compiled), timer))
    return {**table, **errors, **summarize(times)}, timed_out


def needs_tuning(model_file: Path, options: CompileOptions, on_board: bool = False) -> bool:
    if options.format != "vmfb" or options.backend != "llvm-cpu" or not (on_board or measured_here(options.target)):
        return False
    export_dir, _, _ = export_cached(model_file, options.export_timeout, exporter=options.exporter)
    return measured_table(export_dir, options.target, options.backend) is None


def tune(model_file: Path, options: CompileOptions) -> dict:
    """Measure the variants here (unless already measured) and store the table; returns it."""
    export_dir, _, _ = export_cached(model_file, options.export_timeout, exporter=options.exporter)
    table = measured_table(export_dir, options.target, options.backend)
    if table is None:
        table, timed_out = measure_variants(model_file, options)
        table = store_table(export_dir, options.target, options.backend, table, timed_out)
    return table


def compile_tuned(model_file: Path, options: CompileOptions, out_dir: Path) -> CompileResult:
    """compile_model (vmfb) with the fastest variant for this model on this target, measured now
    if it never was."""
    options = options.but(format="vmfb", variant=None)
    if options.backend == "llvm-cpu" and counts_here(options.target):   # ARM without a board: by counted work
        return compile_counted(model_file, options, out_dir)
    if not needs_tuning(model_file, options):
        return compile_model(model_file, options, out_dir)
    tune(model_file, options)
    return compile_model(model_file, options, out_dir).but(cached=False)
