"""Latency, per-dispatch time and peak memory of a compiled module, from iree-benchmark-module.

Each repetition is one call (`--benchmark_min_time=1x`), as the audio thread makes one call
per block: the spread of the repetitions is the per-block jitter, not an average of averages.
The dispatch rows come from IREE 3.13's `--dispatch_statistics` (an untimed extra pass), the
peak from the allocator statistics (`--print_statistics`).
"""
from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass

from ..errors import BenchError
from ..pipeline.tools import run_tool

TARGET_SECONDS = 2.0       # measuring budget per model on the host
MIN_REPETITIONS, MAX_REPETITIONS = 20, 2000
BENCH_TIMEOUT = 600.0


@dataclass
class Measurement:
    latencies_ms: list[float]
    dispatches: list[dict]
    peak_bytes: int | None

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return {"min": ordered[0], "median": statistics.median(ordered), "p99": p99, "max": ordered[-1]}

    def histogram(self, bins: int = 24) -> dict:
        """Counts of calls per latency bin, from the fastest to the p99.9 call (outliers in the last bin)."""
        ordered = sorted(self.latencies_ms)
        low, high = ordered[0], ordered[min(len(ordered) - 1, int(0.999 * len(ordered)))]
        width = (high - low) / bins or 1e-9
        counts = [0] * bins
        for value in ordered:
            counts[min(bins - 1, int((value - low) / width))] += 1
        return {"edges": [low + i * width for i in range(bins + 1)], "counts": counts}


def repetitions_for(estimate_ms: float, seconds: float = TARGET_SECONDS) -> int:
    return int(max(MIN_REPETITIONS, min(MAX_REPETITIONS, seconds * 1000 / max(estimate_ms, 1e-3))))


def benchmark_argv(module: str, inputs: list[str], repetitions: int, dispatches: bool = True) -> list[str]:
    return [f"--module={module}", "--device=local-sync", "--function=main", *[f"--input=@{p}" for p in inputs],
            "--benchmark_format=json", f"--benchmark_repetitions={repetitions}", "--benchmark_min_time=1x",
            "--benchmark_min_warmup_time=0.05", "--print_statistics",
            f"--dispatch_statistics={'true' if dispatches else 'false'}"]


def parse_benchmark(stdout: str, stderr: str) -> Measurement:
    try:
        rows = json.loads(stdout[stdout.index("{"):])["benchmarks"]
    except (ValueError, KeyError) as e:
        raise BenchError(f"iree-benchmark-module gave no results: {stderr.strip().splitlines()[-1:] or e}",
                         detail=stderr[-4000:]) from None
    unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
    latencies = [r["real_time"] * unit[r["time_unit"]] for r in rows
                 if r.get("run_type") == "iteration" and "/process_time/" in r["name"]]
    dispatches = [{"name": r["name"].split("$", 1)[1], "ms": r["real_time"] * unit[r["time_unit"]],
                   "percent": r.get("percent"), "calls": int(r.get("calls", 1))}
                  for r in rows if "$" in r["name"]]
    dispatches.sort(key=lambda d: -d["ms"])
    if not latencies:
        raise BenchError("iree-benchmark-module reported no timed calls", detail=stderr[-4000:])
    peaks = [int(m.group(1)) for m in re.finditer(r"(\d+)B peak", stderr)]
    return Measurement(latencies, dispatches, sum(peaks) if peaks else None)


def run_benchmark(argv: list[str]) -> Measurement:
    """iree-benchmark-module (argv: the tool, after any emulator, and its flags), run and parsed."""
    result = run_tool(argv, timeout=BENCH_TIMEOUT, stage="benchmarking")
    if result.returncode != 0:
        lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
        raise BenchError(f"iree-benchmark-module failed: {lines[-1][:300] if lines else result.returncode}",
                         detail=result.stderr[-4000:])
    return parse_benchmark(result.stdout, result.stderr)
