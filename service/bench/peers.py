"""The peers: the same model, same input, one thread, in eager PyTorch, TorchScript and
ONNX Runtime. Run as `python -m service.bench.peers MODEL_FILE [--seconds S] [--ours ARGV_JSON]`
in its own process (thread settings and crashes stay there); prints one JSON object:
{peer: {"median_ms": float, "calls": int} or {"error": str}}.

With --ours (an iree-benchmark-module command line), our module is timed side by side: the
contenders take turns in short rounds, so a machine that slows down for a while (a shared VM
does, by 30 % and more) slows every contender alike instead of whichever ran then. The result
then also has "ours".
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

PEERS = ("torch_eager", "torchscript", "onnxruntime")
ROUNDS = 5


def time_calls(call, seconds: float, min_calls: int = 4) -> list[float]:
    """Milliseconds of each call, after a short warm-up, for about `seconds`."""
    for _ in range(3):
        call()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        started = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - started) / 1e6)
        if len(times) >= 100_000:
            break
    return times


def time_ours(argv: list[str]) -> list[float]:
    """Per-call milliseconds of one iree-benchmark-module run."""
    from .measure import parse_benchmark
    run = subprocess.run(argv, capture_output=True, text=True)
    return parse_benchmark(run.stdout, run.stderr).latencies_ms


def summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times), "calls": len(times)}


# each peer takes the model's inputs as a tuple (one tensor for most models), in call order
def eager(module, examples):
    return lambda: module(*examples)


def torchscript(module, examples):
    import torch
    traced = torch.jit.freeze(torch.jit.trace(module, examples, check_trace=False).eval())
    return lambda: traced(*examples)


def onnxruntime(module, examples):
    """A stateful model's state goes in and out explicitly (explicit_state.py; ONNX has no state):
    each call's new state is fed to the next, so ORT carries it as ours and PyTorch do."""
    import onnxruntime as ort
    import torch

    from .explicit_state import starting_state, state_names, with_explicit_state
    names = state_names(module, examples)
    state = starting_state(module, names)
    exported = with_explicit_state(module, names) if names else module
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(exported, (*examples, *state), str(path), dynamo=True, external_data=False, verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    feed = {name: value.numpy() for name, value in zip(inputs, [*examples, *state])}
    if not names:
        return lambda: session.run(None, feed)
    carried = inputs[len(examples):]

    def call():
        *outputs, = session.run(None, feed)
        feed.update(zip(carried, outputs[-len(names):]))
        return outputs[:-len(names)]
    return call


def _error(e: Exception) -> dict:
    message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return {"error": f"{type(e).__name__}: {message}"}


def measure_peers(model_file: Path, seconds: float, ours: list[str] | None = None, rounds: int = ROUNDS) -> dict:
    """Each peer (and ours, given its benchmark command) for `seconds` in all, in turns."""
    import torch

    from ..modelfile import load_model
    torch.set_num_threads(1)
    loaded = load_model(model_file)
    results, calls = {}, {}
    for name, prepare in (("torch_eager", eager), ("torchscript", torchscript), ("onnxruntime", onnxruntime)):
        try:
            with torch.no_grad():
                calls[name] = prepare(loaded.module, loaded.example_inputs)
                calls[name]()
        except Exception as e:  # a peer that cannot run the model reports why, the others go on
            results[name] = _error(e)
    times = {name: [] for name in [*calls, *(["ours"] if ours else [])]}
    for _ in range(rounds):
        if ours:
            times["ours"] += time_ours(ours)
        for name, call in list(calls.items()):
            try:
                with torch.no_grad():
                    times[name] += time_calls(call, seconds / rounds)
            except Exception as e:
                results[name] = _error(e)
                del calls[name], times[name]
    results.update({name: summary(t) for name, t in times.items()})
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_file", type=Path)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--ours", type=json.loads, help="iree-benchmark-module argv (JSON list), timed in turns too")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(json.dumps(measure_peers(args.model_file, args.seconds, args.ours)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
