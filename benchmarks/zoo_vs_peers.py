"""The scoreboard: every zoo model on this machine, ours against the peers, side by side.

    .venv/bin/python benchmarks/zoo_vs_peers.py [NAME...] [--seconds 2]

One thread everywhere, one block per call, the same seeded input and weights. Writes
benchmarks/results.md (table + machine) and benchmarks/results.png (bar chart). With NAMEs, only
those rows are measured again; the other models' rows (and the peak) are kept from results.json.

A stateful model (one whose buffers forward() updates) carries its state from call to call in
every contender: ours in the module, eager PyTorch and TorchScript in its buffers, ONNX Runtime
as explicit state inputs and outputs fed from one call to the next (service/bench/peers.py).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
from datetime import date
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

import zoo  # noqa: E402
from service.bench.bench import bench_model  # noqa: E402
from service.bench.peers import PEERS  # noqa: E402
from service.pipeline.compile import CompileOptions  # noqa: E402
from service.errors import BelaIreeError  # noqa: E402
from service.pipeline.targets import TARGETS  # noqa: E402


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("iree-base-compiler", "torch", "onnxruntime"))
    return f"{cpu}, {platform.machine()}, Linux {platform.release()}; {versions}"


def flops_per_block(name: str) -> int:
    """Floating-point operations of one call (multiply-adds count 2), by PyTorch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from service.modelfile import load_model
    loaded = load_model(zoo.model_path(name))
    counter = FlopCounterMode(display=False)
    # the fused transformer fast path hides its matmuls from the counter
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), counter:
            loaded.module(*loaded.example_inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return counter.get_total_flops()


MATMUL_1024 = """
func.func @main(%a: tensor<1024x1024xf32>, %b: tensor<1024x1024xf32>) -> tensor<1024x1024xf32> {
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<1024x1024xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<1024x1024xf32>) -> tensor<1024x1024xf32>
  %c = linalg.matmul ins(%a, %b : tensor<1024x1024xf32>, tensor<1024x1024xf32>)
                     outs(%init : tensor<1024x1024xf32>) -> tensor<1024x1024xf32>
  return %c : tensor<1024x1024xf32>
}
"""


def matmul_module(b):
    """x @ b with b stored: the 1024 matmul as a module, for the peers' own session builders."""
    import torch

    class MatMul(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("b", b)

        def forward(self, x):
            return x @ self.b
    return MatMul().eval()


def single_core_peak_gflops() -> dict:
    """What one core of this machine reaches on a large float32 matmul, by each implementation
    (PyTorch's BLAS, ONNX Runtime's MLAS, IREE with data tiling and microkernels), one thread,
    timed as the peers and ours are. The best of them is the peak the table measures against."""
    import subprocess

    import numpy as np
    import torch

    from service.bench import peers
    from service.bench.measure import benchmark_argv
    from service.bench.runtime_tools import host_tool
    from service.pipeline.tools import iree_compile
    from service.pipeline.variants import VARIANTS
    gflop = 2 * 1024 ** 3 / 1e9
    torch.set_num_threads(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    module = matmul_module(b)
    results = {"PyTorch": gflop / (min(peers.time_calls(peers.eager(module, (a,)), 0.5)) / 1e3),
               "ONNX Runtime": gflop / (min(peers.time_calls(peers.onnxruntime(module, (a,)), 0.5)) / 1e3)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "matmul.mlir").write_text(MATMUL_1024)
        flags = TARGETS["host"].flags("llvm-cpu") + list(VARIANTS["data-tiling+ukernels"])
        subprocess.run([iree_compile(), str(work / "matmul.mlir"), *flags, "-o", str(work / "matmul.vmfb")], check=True)
        inputs = [str(work / name) for name in ("a.npy", "b.npy")]
        for path, value in zip(inputs, (a, b)):
            np.save(path, value.numpy())
        argv = [str(host_tool("iree-benchmark-module")), *benchmark_argv(str(work / "matmul.vmfb"), inputs, 10, dispatches=False)]
        results["IREE"] = gflop / (min(peers.time_ours(argv)) / 1e3)
    return results


def run(names: list[str], seconds: float, console: Console) -> list[dict]:
    rows = []
    with Progress(console=console) as progress, tempfile.TemporaryDirectory() as tmp:
        task = progress.add_task("zoo", total=len(names))
        for name in names:
            progress.update(task, description=f"{name}: compiling, measuring ours and the peers")
            try:
                row = bench_model(zoo.model_path(name), CompileOptions(TARGETS["host"]), Path(tmp) / name, peers=True,
                                  seconds=seconds)
                row["flops"] = flops_per_block(name)
                row["machine"], row["date"] = machine(), str(date.today())
                rows.append(row)
            except BelaIreeError as e:
                rows.append({"model": name, "error": str(e).splitlines()[0]})
            progress.advance(task)
    return rows


def ours_ms(row: dict) -> float:
    """Our median timed in turns with the peers (the bench's own run if there is none)."""
    return row.get("side_by_side_ms", row["latency_ms"]["median"])


def best_peer(row: dict) -> tuple[str, float] | None:
    timed = [(p, row["peers"][p]["median_ms"]) for p in PEERS if "median_ms" in row["peers"].get(p, {})]
    return min(timed, key=lambda t: t[1]) if timed else None


def model_cell(row: dict) -> str:
    """The model's name; a stateful model's says so, with its block (not the 1024 samples of the rest)."""
    if not row.get("state"):
        return row["model"]
    block = "one control step" if row["model"] == "mdrnn_control" else f"{row['block_size']}-sample block"
    return f"{row['model']} (stateful, {block})"


def merged(rows: list[dict], previous: Path) -> list[dict]:
    """rows, with the rows of results.json for the models not measured again, in zoo order."""
    kept = {row["model"]: row for row in json.loads(previous.read_text())["models"]} if previous.exists() else {}
    kept.update({row["model"]: row for row in rows})
    order = zoo.names()
    return sorted(kept.values(), key=lambda row: order.index(row["model"]) if row["model"] in order else len(order))


def markdown(rows: list[dict], peak: dict, where: dict) -> str:
    """where: {"machine", "date"} of the full run (the peak's); rows measured later elsewhere are marked."""
    later = [row for row in rows if row.get("machine", where["machine"]) != where["machine"]]
    lines = [f"# bela-iree against the peers ({where['date']})", "",
             f"Machine: {where['machine']}; one core reaches {max(peak.values()):.0f} GFLOP/s on a 1024x1024 float32 "
             f"matmul ({', '.join(f'{name} {value:.0f}' for name, value in peak.items())}).", "",
             "Median ms per 1024-sample block, one thread, same input and weights; ours and the three peers "
             "are timed in turns (five rounds each, medians over all calls), so a slow spell of this shared "
             "VM hits all of them alike; ratio = best peer / ours "
             "(above 1: we are faster). Accuracy: max abs error against PyTorch. MFLOP: floating-point "
             "operations per block of the model as written (PyTorch's flop counter counts matmuls and "
             "convolutions, not FFTs or elementwise math, so it reads 0 for log_spectrum); "
             "GFLOP/s: ours, and as a share of that "
             "single-core peak. Above 100 % means a rewrite does less arithmetic than the model as written "
             "(simple_conv_1d's conv+pool fusion, resnet_1d's Winograd convolutions and transformer_block's "
             "embedding folded into the attention projection each halve it).", "",
             "Ours is the vmfb. EmitC beside it, every zoo model on this computer and on emulated Bela "
             "(what the board gets and compiles, and the latency of both): [emitc.md](emitc.md).", "",
             "Stateful models (marked with their block: 128 samples, or one control step for mdrnn_control, "
             "which is called once per 128-sample audio block) carry their state from call to call in every "
             "contender: ours in the module, eager PyTorch and TorchScript in the module's buffers, ONNX Runtime "
             "as explicit state inputs and outputs, each call's new state fed into the next. Their accuracy is "
             "the first call's; the streaming check (8 blocks in a row) is in [streaming.md](streaming.md).", "",
             *([f"Rows marked † were measured later, by `zoo_vs_peers.py NAME...`, on another machine of this "
                f"shared pool ({later[0]['machine']}, {later[0]['date']}): within a row ours and the peers are timed in "
                "turns on the same machine, so the ratio holds; the GFLOP/s share is of the peak above.", ""]
              if later else []),
             "| model | ours | torch eager | TorchScript | ONNX Runtime | ratio to best peer | accuracy | MFLOP | GFLOP/s (of peak) | variant |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    ratios = []
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | failed: {row['error']} | | | | | | | | |")
            continue
        ours = ours_ms(row)
        cells = [f"{row['peers'][p]['median_ms']:.4g}" if "median_ms" in row["peers"][p] else "fails" for p in PEERS]
        best = best_peer(row)
        ratio = best[1] / ours if best else None
        if ratio:
            ratios.append(ratio)
        gflops = row["flops"] / ours / 1e6
        mark = " †" if row in later else ""
        lines.append(f"| {model_cell(row)}{mark} | {ours:.4g} | {' | '.join(cells)} | "
                     f"{f'{ratio:.2f}' if ratio else 'n/a'} | {row['accuracy']['max_abs_err']:.2g} | "
                     f"{row['flops'] / 1e6:.4g} | {gflops:.3g} ({100 * gflops / max(peak.values()):.0f} %) | {row.get('variant', '')} |")
    if ratios:
        geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        wins = sum(r >= 1 for r in ratios)
        lines += ["", f"Geometric mean of (best peer / ours): **{geomean:.2f}**; we are at least as fast as the best "
                  f"peer on {wins} of {len(ratios)} models.", ""]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    good = [r for r in rows if "error" not in r]
    series = [("bela-iree", [ours_ms(r) for r in good])]
    for peer in PEERS:
        series.append((peer, [r["peers"][peer].get("median_ms", float("nan")) for r in good]))
    fig, (ax, ratio_ax) = plt.subplots(2, 1, figsize=(11, 7.5), height_ratios=(3, 2), sharex=True)
    width = 0.8 / len(series)
    for index, (label, values) in enumerate(series):
        ax.bar([i + index * width for i in range(len(good))], values, width, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("median ms per block (log)")
    ax.set_title("bela-iree vs peers, one thread, one block (1024 samples; stateful: 128 or one step)")
    ax.legend()
    # the scoreboard at a glance: above the line we beat the fastest peer
    ratios = [best[1] / ours_ms(r) if (best := best_peer(r)) else float("nan") for r in good]
    centres = [i + 0.4 - width / 2 for i in range(len(good))]
    ratio_ax.bar(centres, ratios, 0.5, color=["tab:green" if x >= 1 else "tab:red" for x in ratios])
    ratio_ax.axhline(1.0, color="black", linewidth=0.8)
    ratio_ax.set_ylabel("fastest peer / ours")
    ratio_ax.set_xticks(centres, [r["model"] for r in good], rotation=25, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    console = Console(stderr=True)
    previous = args.out / "results.json"
    if args.names and previous.exists():   # some rows again: the rest, the peak and its machine as they were
        kept = json.loads(previous.read_text())
        peak, where = kept["peak_gflops"], kept["where"]
        rows = merged(run(args.names, args.seconds, console), previous)
    else:
        peak, where = single_core_peak_gflops(), {"machine": machine(), "date": str(date.today())}
        rows = run(zoo.names(), args.seconds, console)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"peak_gflops": peak, "where": where, "models": rows}, indent=1))
    (args.out / "results.md").write_text(markdown(rows, peak, where))
    chart(rows, args.out / "results.png")
    console.print(markdown(rows, peak, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
