"""Neural Amp Modeler captures on each board: estimated share of the audio block, and host
latency against NAM's own PyTorch and ONNX Runtime on the same streaming work.

    nice -n 10 .venv/bin/python benchmarks/nam_captures.py [--captures standard,lite,feather,nano,lstm]
                                                  [--blocks 16,64,128] [--targets bela,gem,bbai64,host]

Captures are made here with NAM's own exporter (tests/nam_reference.py: NAM's trainer presets,
and a 1 x 16 LSTM), never downloaded, and imported the way `bela-iree bench capture.nam` does
(service/nam: a streaming module whose histories live in buffers), at 48 kHz, one model per
block size. For each ARM board: the vmfb with IREE's default flags, one steady-state call counted
on the board's core under qemu (the `estimate` of `bench --json`), as a share of the block's
deadline. On the host: our module (iree-benchmark-module, one thread) in turns with the peers
on the same streaming work: our streaming module in eager PyTorch and in ONNX Runtime (state
fed back each call), and NAM's own PyTorch model, which has no streaming form: per block it runs
the block plus its receptive field (`net(x, pad_start=False)` on rf - 1 + T samples).
Results are kept in nam.json (one entry per capture, block and target; rerun to refresh).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from service.bench.estimate import estimate_call  # noqa: E402
from service.errors import BelaIreeError  # noqa: E402
from service.modelfile import resolve_model  # noqa: E402
from service.nam import read_capture  # noqa: E402
from service.pipeline.compile import CompileOptions, compile_model  # noqa: E402
from service.pipeline.targets import get_target  # noqa: E402
from tests import nam_reference as nam  # noqa: E402

RESULTS, TABLE = HERE / "nam.json", HERE / "nam.md"
BUILD = ROOT / "build" / "nam-bench"
CAPTURES = ("standard", "lite", "feather", "nano", "lstm")
BLOCKS = (16, 64, 128)
BOARDS = ("bela", "gem", "bbai64")
RATE = 48000


def make_capture(name: str) -> Path:
    folder = BUILD / "captures"
    if (folder / f"{name}.nam").exists():
        return folder / f"{name}.nam"
    net = nam.make_lstm(16, 1) if name == "lstm" else nam.make_wavenet(nam.ARCHITECTURES[name]())
    return nam.export_capture(net, folder, name)


def macs_per_sample(capture: Path) -> int:
    """Multiply-adds per output sample of the streaming import (convolutions and matmuls)."""
    c = read_capture(capture).network
    if hasattr(c, "arrays"):
        total = 0
        for array in c.arrays:
            total += array.rechannel.weight.numel() + array.head_rechannel.weight.numel()
            for layer in array.layers:
                total += layer.conv.weight.numel() + layer.mixer.weight.numel()
                total += sum(x.weight.numel() for x in (layer.layer1x1, layer.head1x1) if x is not None)
        return total
    return sum(w.numel() for w in (*c.weight_ih, *c.weight_hh)) + c.head_weight.numel()


@contextmanager
def results_file():
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / "results.lock", "w") as lock:     # two runs (boards, host) may share the file
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        yield data
        RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True))


def record(capture: str, block: int, target: str, entry: dict) -> None:
    with results_file() as data:
        data.setdefault(capture, {}).setdefault(str(block), {})[target] = entry
    print(capture, block, target, json.dumps(entry), flush=True)


def board_entry(model_file: Path, target_name: str, block: int) -> dict:
    target = get_target(target_name)
    out = BUILD / f"{model_file.parent.name}-{block}-{target_name}"
    started = time.perf_counter()
    compiled = compile_model(model_file, CompileOptions(target, "vmfb", "llvm-cpu", variant="default"), out)
    estimate = estimate_call(out, target, 1000.0 * block / RATE)
    return {"instructions": estimate["instructions"], "estimate_ms": estimate["ms"],
            "deadline_ms": round(1000.0 * block / RATE, 4), "share": round(estimate["ms"] * RATE / (1000.0 * block), 3),
            "compile_s": round(compiled.seconds.get("compile", 0.0), 1), "seconds": round(time.perf_counter() - started, 1)}


def nam_pytorch_ms(capture: Path, block: int, seconds: float = 1.0) -> float:
    """NAM's own model on one block plus its receptive field, one thread, median ms."""
    import statistics

    import torch
    torch.set_num_threads(1)
    net = nam.nam_models().init_from_nam(json.loads(capture.read_text())).eval()
    x = torch.zeros(1, net.receptive_field - 1 + block)
    times = []
    with torch.no_grad():
        for _ in range(3):
            net(x, pad_start=False)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 5:
            t = time.perf_counter()
            net(x, pad_start=False)
            times.append(1000.0 * (time.perf_counter() - t))
    return statistics.median(times)


def host_entry(model_file: Path, capture: Path, block: int) -> dict:
    from service.bench.bench import bench_model
    out = BUILD / f"{model_file.parent.name}-{block}-host"
    result = bench_model(model_file, CompileOptions(get_target("host"), "vmfb", "llvm-cpu", variant="default"), out,
                         peers=True, seconds=2.0)
    peers = result.get("peers", {})
    median = lambda name: peers.get(name, {}).get("median_ms")   # noqa: E731
    return {"ours_ms": (peers.get("ours") or {}).get("median_ms") or result["latency_ms"]["median"],
            "torch_streaming_ms": median("torch_eager"), "onnxruntime_ms": median("onnxruntime"),
            "onnxruntime_error": peers.get("onnxruntime", {}).get("error"),
            "nam_pytorch_ms": round(nam_pytorch_ms(capture, block), 4),
            "streaming_max_abs_err": (result.get("streaming") or {}).get("max_abs_err"),
            "deadline_ms": round(1000.0 * block / RATE, 4)}


def run(captures, blocks, targets) -> None:
    for name in captures:
        capture = make_capture(name)
        for block in blocks:
            model_file = resolve_model(str(capture), block)
            for target in targets:
                try:
                    entry = host_entry(model_file, capture, block) if target == "host" else \
                        board_entry(model_file, target, block)
                except BelaIreeError as e:
                    entry = {"error": e.message}
                record(name, block, target, entry)


def fmt(value, digits=2, suffix=""):
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def write_table() -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    lines = ["# Neural Amp Modeler captures on each board", "",
             f"Written by `benchmarks/nam_captures.py` ({date.today().isoformat()}); see its docstring for the method. "
             "Captures made with NAM's own exporter (NAM 0.13 presets: standard 16+8 channels x 2 x 10 layers, "
             "lite 12+6, feather 8+4, nano 4+2 channels over 7 + 13 layers; an LSTM of 1 x 16), imported as "
             "streaming models at 48 kHz. Board columns: the estimated share of the block a call takes "
             "(instructions counted on the emulated core and the board model of `bench --json` \"estimate\"; "
             "an estimate, not a measurement; over 1.00 does not fit). Instructions are millions per call.", "",
             "| capture | MAC/sample | block | Bela share | Bela M instr | Gem share | AI-64 share | host ours ms | "
             "PyTorch streaming ms | ONNX Runtime ms | NAM PyTorch ms |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in CAPTURES:
        if name not in data:
            continue
        capture = BUILD / "captures" / f"{name}.nam"
        macs = macs_per_sample(capture) if capture.exists() else None
        for block in BLOCKS:
            row = data[name].get(str(block))
            if not row:
                continue
            cell = lambda t, key, d=2: fmt((row.get(t) or {}).get(key), d) if "error" not in (row.get(t) or {}) \
                else "error"   # noqa: E731
            instr = (row.get("bela") or {}).get("instructions")
            host = row.get("host") or {}
            lines.append(f"| {name} | {macs or '-'} | {block} | {cell('bela', 'share')} | "
                         f"{fmt(instr / 1e6 if instr else None)} | {cell('gem', 'share')} | {cell('bbai64', 'share')} | "
                         f"{fmt(host.get('ours_ms'), 3)} | {fmt(host.get('torch_streaming_ms'), 3)} | "
                         f"{fmt(host.get('onnxruntime_ms'), 3)} | {fmt(host.get('nam_pytorch_ms'), 3)} |")
    errors = [(n, b, t, e["error"]) for n, blocks in data.items() for b, row in blocks.items()
              for t, e in row.items() if "error" in e]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {n}, block {b}, {t}: {e}" for n, b, t, e in errors]
    notes = TABLE.read_text().split("<!-- notes -->", 1)[1] if TABLE.exists() and "<!-- notes -->" in TABLE.read_text() \
        else "\n"
    TABLE.write_text("\n".join(lines) + "\n\n<!-- notes -->" + notes)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", default=",".join(CAPTURES))
    parser.add_argument("--blocks", default=",".join(map(str, BLOCKS)))
    parser.add_argument("--targets", default=",".join((*BOARDS, "host")))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.table_only:
        run(args.captures.split(","), [int(b) for b in args.blocks.split(",")], args.targets.split(","))
    write_table()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
