"""The latency / CPU trade-off per block size (`bench --blocks`) and the block `new` picks.

For each block B, Bela is taken to run at a period of B frames and the model to take B frames
per call: a block-flexible model (pipeline/block_size.py) is exported and compiled at B, and its
call timed the way the glue choice goes by (glue_choice.call_ms: the board estimate, counted on the
emulated core, for a board target; the measured median on host). A fixed-block model gives one
entry, at its own block, and says why.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import BelaIreeError
from ..glue_choice import RENDER_SHARE, call_ms, choose_glue, latency_samples, period_ms
from ..pipeline.compile import CompileOptions, compile_model
from .bench import bench_compiled

QUICK_CALLS = 20              # enough for a median per block; the estimate counts one call anyway
CANDIDATES = (16, 32, 64, 128, 256, 512, 1024)   # Bela's periods `new` tries, smallest first
AUX_TASK_SHARE = 0.8          # no block within RENDER_SHARE: the smallest within this, on the aux task


def entry(block: int, ms: float | None, sample_rate: int) -> dict:
    """One row of "blocks": Bela at a period of `block` frames, the model taking `block` frames."""
    deadline = period_ms(block, sample_rate)
    glue = choose_glue(ms, block, block, sample_rate)
    return {"block": block, "estimate_ms": ms, "deadline_ms": deadline,
            "share": None if ms is None else ms / deadline, "glue": glue,
            "latency_samples": latency_samples(glue, block)}


def measure_at(model_file: Path, options: CompileOptions, out_dir: Path, block: int | None,
               sample_rate: int | None = None) -> dict:
    """Compile at `block` (None: the model's own) and time one call; the entry, plus "basis"."""
    compiled = compile_model(model_file, options.but(block=block), out_dir / f"block-{block or 'own'}")
    result = bench_compiled(compiled, options.target, repetitions=QUICK_CALLS, sample_rate=sample_rate,
                            period=compiled.export["block_size"])
    row = entry(compiled.export["block_size"], call_ms(result), result["sample_rate"])
    row["basis"] = "estimate" if "ms" in result.get("estimate", {}) else result["ran_on"]
    return row


def bench_blocks(model_file: Path, options: CompileOptions, out_dir: Path, blocks: list[int],
                 sample_rate: int | None = None) -> tuple[list[dict], str | None]:
    """The rows for `blocks`, and None; or, for a model that takes only its own block, the one row
    at that block and why."""
    rows = []
    for block in blocks:
        try:
            rows.append(measure_at(model_file, options, out_dir, block, sample_rate))
        except BelaIreeError as e:
            if e.stage != "block":
                raise
            return [measure_at(model_file, options, out_dir, None, sample_rate)], e.message
    return rows, None


def pick_block(model_file: Path, options: CompileOptions, out_dir: Path,
               candidates: tuple[int, ...] = CANDIDATES) -> tuple[int | None, list[dict], str | None]:
    """The smallest candidate block whose call takes at most RENDER_SHARE of it (it then runs
    inside render()), else the smallest within AUX_TASK_SHARE; tried smallest first, stopping at
    the first that fits with that headroom. (None, rows, why) for a fixed-block model or when no
    candidate fits (the model's own block stays)."""
    rows = []
    for block in candidates:
        try:
            row = measure_at(model_file, options, out_dir, block)
        except BelaIreeError as e:
            if e.stage != "block":
                raise
            return None, rows, e.message
        rows.append(row)
        if row["share"] is not None and row["share"] <= RENDER_SHARE:
            return block, rows, None
    within = [r for r in rows if r["share"] is not None and r["share"] <= AUX_TASK_SHARE]
    if within:
        return within[0]["block"], rows, None
    return None, rows, "no block tried fits in its period with headroom"
