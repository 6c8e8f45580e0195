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
from ..glue_choice import call_ms, choose_glue, latency_samples, period_ms
from ..pipeline.compile import CompileOptions, compile_model
from .bench import bench_compiled

QUICK_CALLS = 20              # enough for a median per block; the estimate counts one call anyway
CANDIDATES = (16, 32, 64, 128, 256, 512, 1024)   # Bela's periods `new` tries, smallest first
FIT_SHARE = 0.8               # "fits with headroom": a call takes at most this share of its block


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
    """The smallest candidate block whose call takes at most FIT_SHARE of it (fits with headroom;
    the glue then runs it inside render() if it takes at most half, glue_choice.py), tried smallest
    first. (None, rows, why) for a fixed-block model or when no candidate fits (the model's own
    block stays). lstm_amp on Bela: 16 frames at 71 %, on the aux task, 32 samples added."""
    rows = []
    for block in candidates:
        try:
            row = measure_at(model_file, options, out_dir, block)
        except BelaIreeError as e:
            if e.stage != "block":
                raise
            return None, rows, e.message
        rows.append(row)
        if row["share"] is not None and row["share"] <= FIT_SHARE:
            return block, rows, None
    return None, rows, f"no block tried fits in {100 * FIT_SHARE:.0f} % of its period"
