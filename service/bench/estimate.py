"""An estimate of a call's latency on a board, from the work counted on its emulated core.

Labelled as an estimate everywhere it appears: it is a stated model of the board applied to
exact counts, not a measurement. The model, per board:

    compute_ms = instructions / (instructions per cycle x clock)
    memory_ms  = bytes from DRAM / sustained DRAM bandwidth
    ms         = compute_ms + memory_ms   (in-order cores: a miss stalls the pipeline)
                 max(compute_ms, memory_ms)  (out-of-order cores overlap them)

where "bytes from DRAM" are the misses and write-backs of a simulated last-level cache of the
board's size (instruction_count.py). The constants and their sources are in README.md
("Estimated latency on a board"); `bench --board` puts the measured figure beside the estimate,
so each board attached checks the model.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BelaIreeError
from ..pipeline.targets import Target
from .emitc import count_emitc_per_call
from .instruction_count import Cache, Counts, count_per_call

NOTE = "estimated from instructions counted on the emulated core and a stated model of the board; not a measurement"


@dataclass(frozen=True)
class BoardModel:
    board: str
    core: str
    clock_ghz: float
    ipc: float               # instructions per cycle sustained on compiled kernels (an assumption, see README)
    dram_peak_gb_s: float    # bus width x transfer rate
    dram_gb_s: float         # sustained: half the peak (an assumption, see README)
    cache: Cache             # last-level cache, simulated
    out_of_order: bool

    def describe(self) -> str:
        return (f"{self.core} at {self.clock_ghz:g} GHz, {self.ipc:g} instructions/cycle, "
                f"{self.dram_gb_s:g} GB/s from DRAM ({self.dram_peak_gb_s:g} peak), {self.cache.kb} KB L2")


BOARD_MODELS = {
    # BeagleBone Black: AM3358, Cortex-A8 at 1 GHz; 256 KB L2 (8-way, 64 B lines);
    # 512 MB DDR3L on a 16-bit bus at 800 MT/s = 1.6 GB/s peak
    "bela": BoardModel("BeagleBone Black (Bela)", "Cortex-A8", 1.0, 0.6, 1.6, 0.8, Cache(256, 8), False),
    # PocketBeagle 2 (Bela Gem): AM62x, Cortex-A53 at 1.4 GHz; 512 KB L2 (16-way);
    # LPDDR4 on a 16-bit bus at 3200 MT/s = 6.4 GB/s peak
    "gem": BoardModel("PocketBeagle 2 (Bela Gem)", "Cortex-A53", 1.4, 0.8, 6.4, 3.2, Cache(512, 16), False),
    # BeagleBone AI-64: TDA4VM, Cortex-A72 at 2 GHz; 1 MB L2 (16-way);
    # LPDDR4 on a 32-bit bus at 4266 MT/s = 17 GB/s peak
    "bbai64": BoardModel("BeagleBone AI-64", "Cortex-A72", 2.0, 1.5, 17.0, 8.5, Cache(1024, 16), True),
}


def has_model(target: Target) -> bool:
    return target.name in BOARD_MODELS


def estimate_from_counts(counts: Counts, model: BoardModel, deadline_ms: float | None = None) -> dict:
    """The bench JSON's "estimate" for counts on model's board."""
    compute_ms = counts.instructions / (model.ipc * model.clock_ghz * 1e6)
    memory_ms = counts.dram_bytes / (model.dram_gb_s * 1e6)
    ms = max(compute_ms, memory_ms) if model.out_of_order else compute_ms + memory_ms
    estimate = {**counts.to_json(), "ms": float(f"{ms:.3g}"), "compute_ms": float(f"{compute_ms:.3g}"),
                "memory_ms": float(f"{memory_ms:.3g}"),
                "model": {**asdict(model), "cache": asdict(model.cache), "description": model.describe(),
                          "combine": "max" if model.out_of_order else "sum"},
                "note": NOTE}
    if deadline_ms:
        estimate["deadline_ms"] = deadline_ms
        estimate["headroom"] = 1 - estimate["ms"] / deadline_ms
    return estimate


def estimate_call(artifact_dir: Path, target: Target, deadline_ms: float | None = None, format: str = "vmfb") -> dict:
    """Count one call of artifact_dir's model (its model.vmfb, or its EmitC module in runtime/'s
    test program) on target's emulated core and estimate its latency."""
    model = BOARD_MODELS[target.name]
    if format == "emitc":
        counts = count_emitc_per_call(artifact_dir, target, model.cache)
    else:
        counts = count_per_call(artifact_dir, target, model.cache)
    return estimate_from_counts(counts, model, deadline_ms)


_ORDINAL = re.compile(r"dispatch_(\d+)")


def _ordinal(name: str | None) -> int | None:
    found = _ORDINAL.search(name or "")
    return int(found.group(1)) if found else None


def counted_dispatches(rows: list[dict], estimate: dict) -> list[dict]:
    """The dispatch table with each dispatch's counted work on the board's core: its kernel's
    instructions per call ("instructions"), its share of the runtime's own ("runtime_instructions":
    the runtime's instructions of a call spread evenly over its dispatches) and the estimate of the
    two ("estimate_ms"), sorted by that. Rows are matched by the dispatch's ordinal in its name; a
    kernel library without symbols has its functions in ordinal order, so address order stands in.
    With no timed rows (EmitC) the counted kernels are the table."""
    kernels = [dict(k) for k in estimate.get("per_dispatch", ())]
    if not kernels:
        return rows
    if any(k.get("name") is None for k in kernels):
        ordinals = sorted({o for o in (_ordinal(r["name"]) for r in rows) if o is not None})
        if len(ordinals) == len(kernels):
            for kernel, ordinal in zip(sorted(kernels, key=lambda k: k["entry"]), ordinals):
                kernel["ordinal"] = ordinal
    by_ordinal = {k.get("ordinal", _ordinal(k.get("name"))): k for k in kernels}
    runtime_each = estimate["runtime_instructions"] / max(estimate["dispatches"], 1)
    per_ms = 1 / (estimate["model"]["ipc"] * estimate["model"]["clock_ghz"] * 1e6)
    table = [dict(r) for r in rows] or [{"name": k.get("name") or f"kernel at {k['entry']:#x}", "ms": None,
                                          "percent": None, "calls": k["runs"]} for k in kernels]
    for row in table:
        kernel = by_ordinal.get(_ordinal(row["name"])) if rows else next(
            k for k in kernels if (k.get("name") or f"kernel at {k['entry']:#x}") == row["name"])
        if kernel is None:
            continue
        row["instructions"] = kernel["instructions"]
        row["workgroups"] = kernel["calls"]
        row["runtime_instructions"] = round(runtime_each * kernel["runs"])
        row["estimate_ms"] = float(f"{(kernel['instructions'] + row['runtime_instructions']) * per_ms:.3g}")
    total = sum(r.get("instructions", 0) + r.get("runtime_instructions", 0) for r in table) or 1
    for row in table:
        if "instructions" in row:
            row["estimate_percent"] = 100 * (row["instructions"] + row["runtime_instructions"]) / total
    return sorted(table, key=lambda r: -(r.get("instructions", 0) + r.get("runtime_instructions", 0)))


def estimate_verdict(estimate: dict) -> str:
    """One line, always saying it is an estimate."""
    where = f"on {estimate['model']['board']}"
    if "deadline_ms" not in estimate:
        return f"estimated {estimate['ms']:.3g} ms per call {where} (an estimate, not a measurement)"
    ms, deadline = estimate["ms"], estimate["deadline_ms"]
    fit = (f"fits: {ms:.3g} ms of {deadline:.3g} ms ({100 * estimate['headroom']:.1f} % headroom)" if ms <= deadline
           else f"does not fit: {ms:.3g} ms for a {deadline:.3g} ms block ({ms / deadline:.1f}x over)")
    return f"estimated {where}: {fit} (an estimate from counted work, not a measurement)"


def add_estimate(result: dict, artifact_dir: Path, target: Target) -> dict:
    """Put the estimate into a bench result (vmfb or EmitC) for a board we have a model of; beside a
    board's measurement, the ratio of the two (how far the model is off on this board)."""
    if not has_model(target):
        return result
    try:
        estimate = estimate_call(artifact_dir, target, result.get("deadline_ms"), result.get("format", "vmfb"))
    except BelaIreeError as e:
        result["estimate"] = {"error": e.message}
        return result
    if result.get("ran_on") == "board":
        estimate["measured_ms"] = result["latency_ms"]["median"]
        estimate["measured_over_estimated"] = result["latency_ms"]["median"] / estimate["ms"]
    if result.get("ran_on") != "board" or not result.get("dispatches"):
        # no board: the counted work is what says where the time goes; on a board, it stands in
        # where the board timed no dispatches (the inline HAL has no device to time them on)
        result["dispatches"] = counted_dispatches(result.get("dispatches") or [], estimate)
    result["estimate"] = estimate
    return result
