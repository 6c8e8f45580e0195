"""The iree-compile flag sets a model may be built with, and which one measured fastest.

IREE's best flags differ by model: data tiling speeds up matmuls and slows some other
kernels; microkernels help some shapes. bench/tuning.py measures the variants; the table it
stores (per exported MLIR, target, back end and IREE version) is read here, so every build of
the same model (`compile`, `build`, the service's rebuilds) uses the winner without measuring.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import cache, tuning_spec
from .targets import Target

# data tiling packs large operands into vectors and stack buffers beyond IREE's default
# guards on some models (resnet_1d's im2col); those guards are relaxed with it
DATA_TILING = ("--iree-opt-data-tiling", "--iree-llvmcpu-fail-on-large-vector=false",
               "--iree-llvmcpu-stack-allocation-limit=1048576")
VARIANTS = {
    "default": (),
    "data-tiling": DATA_TILING,
    "ukernels": ("--iree-llvmcpu-enable-ukernels=all",),
    "data-tiling+ukernels": DATA_TILING + ("--iree-llvmcpu-enable-ukernels=all",),
    # IREE's -O3 fuses more (the starter's two matmuls become one dispatch): fewer dispatches,
    # so less of the runtime's cost per call (19.4 k -> 14.4 k instructions for the starter at 16
    # frames on Gem); some kernels get slower (lstm_amp 62.5 k -> 64.9 k), hence a variant
    "O3": ("--iree-opt-level=O3",),
}
METHOD = 5  # bump when the way variants are measured changes: older tables are measured again


def table_path(export_dir: Path, target: Target, backend: str) -> Path:
    key = cache.digest((export_dir / "model.mlirbc").read_bytes(), target.name, backend, cache.iree_version(),
                       json.dumps({"variants": VARIANTS, "method": METHOD}), *tuning_spec.tuning_key_parts(target))
    return cache.cache_root() / "tuning" / f"{key}.json"


def measured_table(export_dir: Path, target: Target, backend: str) -> dict | None:
    """{variant: {"median_ms"} or {"error"}} if this model was tuned for this target, else None."""
    path = table_path(export_dir, target, backend)
    return json.loads(path.read_text()) if path.exists() else None


def fastest(table: dict | None) -> str:
    timed = {name: row["median_ms"] for name, row in (table or {}).items() if "median_ms" in row}
    return min(timed, key=timed.get) if timed else "default"


def describe(table: dict) -> str:
    """One line for people: each variant's median, or that it failed (counted tables, of
    bench/counted_tuning.py: why the variant was chosen)."""
    if table.get("basis") == "counted":
        return table["why"]
    return ", ".join(f"{name} {row['median_ms']:.3g} ms" if "median_ms" in row else f"{name} failed"
                     for name, row in table.items())
