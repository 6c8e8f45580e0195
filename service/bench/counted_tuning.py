"""Choosing an ARM target's flag set by counted work, when no board is attached.

Emulated timings say nothing about a board, so tuning.py measures the variants of
pipeline/variants.py only where the target runs for real. The work a call does on the board's
core, though, is exact under emulation (instruction_count.py): each variant is compiled and one
steady-state call of it counted on the emulated core; the variant with the fewest instructions
per call is chosen (DRAM bytes from the simulated L2, then the estimate, break ties), and the
result says so: `tuning` is {"basis": "counted", "chosen", "why", "variants": {name:
{"instructions", "dram_bytes", "estimated_ms"} or {"error"}}}. The counts are cached per exported
model, target, variant set and counting method, like the measured tables.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..errors import BelaIreeError, ToolTimeout
from ..pipeline import cache, tuning_spec
from ..pipeline.compile import CompileOptions, CompileResult, compile_model, export_cached
from ..pipeline.targets import Target
from ..pipeline.variants import VARIANTS
from .estimate import BOARD_MODELS, estimate_from_counts, has_model
from .instruction_count import PLUGIN_SOURCE, count_per_call

BASIS = "counted"
TIE = 0.005   # instruction counts this close are the same work


def counts_here(target: Target) -> bool:
    """ARM targets we have a board model for: their variants are chosen by counting here."""
    return target.arch != "x86_64" and has_model(target)


def table_path(export_dir: Path, target: Target, backend: str) -> Path:
    key = cache.digest((export_dir / "model.mlirbc").read_bytes(), target.name, backend, cache.iree_version(),
                       json.dumps(VARIANTS), PLUGIN_SOURCE.read_bytes(), repr(BOARD_MODELS[target.name]), "rows-2",
                       *tuning_spec.tuning_key_parts(target))
    return cache.cache_root() / "tuning-counted" / f"{key}.json"


def count_variants(model_file: Path, options: CompileOptions, folder: Path) -> tuple[dict, bool]:
    """{variant: counts or {"error"}} for every variant compiled into folder/NAME, and whether
    one timed out (then the table is not final)."""
    rows, timed_out = {}, False
    model = BOARD_MODELS[options.target.name]
    for name in VARIANTS:
        try:
            compiled = compile_model(model_file, options.but(format="vmfb", variant=name), folder / name)
            counts = count_per_call(compiled.folder, options.target, model.cache)
        except ToolTimeout as e:
            rows[name], timed_out = {"error": e.message[:300]}, True
            continue
        except BelaIreeError as e:   # a variant that does not compile or run is just not chosen
            rows[name] = {"error": e.message[:300]}
            continue
        rows[name] = {"instructions": counts.instructions, "dram_bytes": counts.dram_bytes,
                      "estimated_ms": estimate_from_counts(counts, model)["ms"]}
    return rows, timed_out


def choose_by_count(rows: dict, target: Target) -> tuple[str, str]:
    """The variant with the fewest instructions per call, and why, in one sentence. Within
    TIE of the fewest, IREE's defaults stay (a flag that changes nothing on this core, like
    ukernels on ARMv7, must not win by a cache line), else the fewest DRAM bytes, again within
    TIE, and among equals the variant with the fewest flags."""
    counted = {name: row for name, row in rows.items() if "instructions" in row}
    if not counted:
        return "default", "no variant could be counted: IREE's defaults"
    fewest = min(row["instructions"] for row in counted.values())
    close = [n for n, row in counted.items() if row["instructions"] <= fewest * (1 + TIE)]
    least_dram = min(counted[n]["dram_bytes"] for n in close)
    # the first in VARIANTS' order (default first, then the fewest flags) among the equals
    chosen = next(n for n in VARIANTS if n in close and counted[n]["dram_bytes"] <= least_dram * (1 + TIE)
                  or n == "default" and n in close)
    others = ", ".join(f"{n} {r['instructions'] / 1e6:.3g} M" for n, r in counted.items() if n != chosen)
    why = (f"fewest instructions per call counted on an emulated {BOARD_MODELS[target.name].core} (no board "
           f"attached): {chosen} {counted[chosen]['instructions'] / 1e6:.3g} M"
           + (f" against {others}" if others else ""))
    return chosen, why


def counted_table(model_file: Path, options: CompileOptions, work: Path) -> dict:
    """The counted table for this model on its target: the counts from the cache, or counted now
    and stored; the choice made from them."""
    target = options.target
    export_dir, _, _ = export_cached(model_file, options.export_timeout, exporter=options.exporter)
    path = table_path(export_dir, target, options.backend)
    if path.exists():
        rows = json.loads(path.read_text())
    else:
        rows, timed_out = count_variants(model_file, options, work)
        if not timed_out and "instructions" in rows.get("default", {}):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=1))
    chosen, why = choose_by_count(rows, target)
    return {"basis": BASIS, "chosen": chosen, "why": why, "variants": rows}


def compile_counted(model_file: Path, options: CompileOptions, out_dir: Path) -> CompileResult:
    """compile_model (vmfb) with the variant chosen by counted work (counted now if it never was)."""
    with tempfile.TemporaryDirectory(prefix="bela-iree-counted-") as tmp:
        table = counted_table(model_file, options, Path(tmp))
    result = compile_model(model_file, options.but(format="vmfb", variant=table["chosen"]), out_dir)
    return result.but(tuning=table)
