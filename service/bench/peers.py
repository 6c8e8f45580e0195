"""The peers: the same model, same input, one thread, in eager PyTorch, TorchScript and
ONNX Runtime. Run as `python -m service.bench.peers MODEL_FILE [--seconds S]` in its own
process (thread settings and crashes stay there); prints one JSON object:
{peer: {"median_ms": float, "calls": int} or {"error": str}}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

PEERS = ("torch_eager", "torchscript", "onnxruntime")


def time_calls(call, seconds: float, min_calls: int = 20) -> dict:
    for _ in range(5):
        call()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        started = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - started) / 1e6)
        if len(times) >= 100_000:
            break
    return {"median_ms": statistics.median(times), "calls": len(times)}


def eager(module, example):
    return lambda: module(example)


def torchscript(module, example):
    import torch
    traced = torch.jit.freeze(torch.jit.trace(module, (example,), check_trace=False).eval())
    return lambda: traced(example)


def onnxruntime(module, example):
    import onnxruntime as ort
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False, verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: example.numpy()}
    return lambda: session.run(None, feed)


def measure_peers(model_file: Path, seconds: float) -> dict:
    import torch

    from ..modelfile import load_model
    torch.set_num_threads(1)
    loaded = load_model(model_file)
    results = {}
    for name, prepare in (("torch_eager", eager), ("torchscript", torchscript), ("onnxruntime", onnxruntime)):
        try:
            with torch.no_grad():
                results[name] = time_calls(prepare(loaded.module, loaded.example_input), seconds)
        except Exception as e:  # a peer that cannot run the model reports why, the others go on
            message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            results[name] = {"error": f"{type(e).__name__}: {message}"}
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_file", type=Path)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(json.dumps(measure_peers(args.model_file, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
