"""`bela-iree bench`: does the model fit in the audio block, with how much headroom, where?

Compiles (cached), checks accuracy against PyTorch on the seeded reference input, measures
latency per call with iree-benchmark-module where the target runs (host natively; aarch64
under qemu, marked as emulated), and optionally the peers on this machine.
"""
from __future__ import annotations

import contextvars
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..glue_choice import call_ms, choose_glue, latency_samples, why as glue_reason
from ..pipeline.compile import CompileOptions, CompileResult, compile_model
from ..pipeline.inline_hal import INLINE_FLAGS
from ..pipeline.kernel_report import REPORT_FILE as KERNEL_REPORT
from ..pipeline.targets import TARGETS, Target
from ..pipeline.tools import run_tool
from ..runtimes.emitc import LIBRARY as EMITC_LIBRARY
from .emitc import measure_emitc
from .estimate import add_estimate, estimate_verdict
from .measure import Measurement, benchmark_argv, repetitions_for, run_benchmark
from .peers import PEERS, ROUNDS as PEERS_ROUNDS
from .run import input_files, max_abs_error, run_module, tolerance
from .runtime_tools import module_mode, tool_command
from .streaming import is_stateful, measure_streaming

EMULATED_NOTE = "measured under qemu-user on this machine: emulated timings, not board timings"
PEERS_TIMEOUT = 900.0


def deadline_ms(block_size: int, sample_rate: int) -> float:
    return 1000.0 * block_size / sample_rate


def bench_compiled(compiled: CompileResult, target: Target, *, block_size: int | None = None,
                   sample_rate: int | None = None, seconds: float = 2.0, repetitions: int | None = None,
                   estimate: bool = True, period: int | None = None, glue: str = "auto") -> dict:
    """Measure where the target runs on this machine: natively, or under qemu (emulated).
    `repetitions` fixes the number of calls (no calibration run) for a quick first figure;
    `estimate`: for an ARM board, also count the work of a call and estimate the board's time
    (estimate.py: seconds to a minute or two the first time for an artifact, then cached).
    `period`, `glue`: Bela's period (default: the model's own block) and the glue asked for (a
    project's: project.glue_setting), for the "glue" chosen (glue_choice.py)."""
    if compiled.format == "emitc":
        ran_on, output, measured = measure_emitc(compiled, target, seconds, repetitions)
        result = with_streaming(bench_result(compiled, ran_on, output, measured, block_size, sample_rate), compiled, target)
        return add_glue(add_estimate(result, compiled.folder, target) if estimate else result, period, glue)
    folder = compiled.folder
    prefix, ran_on = tool_command(target, "iree-benchmark-module")
    with tempfile.TemporaryDirectory(prefix="bela-iree-bench-") as tmp, ThreadPoolExecutor(1) as beside:
        # a quick figure's few calls are mostly the tool starting: the output for the accuracy
        # check is computed meanwhile, not after (a fuller measurement runs alone)
        quick = repetitions is not None
        running = beside.submit(contextvars.copy_context().run, run_module, folder, target) if quick else None
        output = None if quick else run_module(folder, target)
        inputs = [str(p) for p in input_files(folder, Path(tmp))]
        module = str(folder / "model.vmfb")
        if repetitions is None:
            probe = run_benchmark(prefix + module_mode(target) + benchmark_argv(module, inputs, 3, dispatches=False))
            repetitions = repetitions_for(probe.summary()["median"], seconds)
        # the inline HAL has no device to time dispatches on: the counted table takes their place
        measured = run_benchmark(prefix + module_mode(target) + benchmark_argv(module, inputs, repetitions,
                                                         dispatches=not is_inline(compiled)))
        output = running.result() if quick else output
    result = with_streaming(bench_result(compiled, ran_on, output, measured, block_size, sample_rate), compiled, target)
    return add_glue(add_estimate(result, folder, target) if estimate else result, period, glue)


def add_glue(result: dict, period: int | None = None, setting: str = "auto") -> dict:
    """"glue" (render or aux_task), why, and the "latency_samples" it adds, for Bela at `period`
    frames (default: the model's block), from the board estimate or a native measurement."""
    model_block = result["model_block"]
    period = period or model_block
    call = call_ms(result)
    result["glue"] = choose_glue(call, model_block, period, result["sample_rate"], setting)
    result["glue_reason"] = glue_reason(result["glue"], call, model_block, period, result["sample_rate"])
    result["period"] = period
    result["latency_samples"] = latency_samples(result["glue"], model_block)
    return result


def is_inline(compiled: CompileResult) -> bool:
    """Compiled for IREE's inline HAL (pipeline/inline_hal.py)."""
    return INLINE_FLAGS[-1] in compiled.flags


def with_streaming(result: dict, compiled: CompileResult, target: Target) -> dict:
    """A stateful model's "streaming" check (K blocks in one context against PyTorch, state carried)."""
    if is_stateful(compiled):
        result["streaming"] = measure_streaming(compiled, target)
        result["state"] = compiled.export["state"]
    return result


def bench_result(compiled: CompileResult, ran_on: str, output: np.ndarray, measured: Measurement,
                 block_size: int | None, sample_rate: int | None) -> dict:
    """The bench JSON of docs/design.md, wherever the model ran."""
    folder = compiled.folder
    block_size = block_size or compiled.export["block_size"]
    sample_rate = sample_rate or compiled.export["sample_rate"]
    latency = measured.summary()
    deadline = deadline_ms(block_size, sample_rate)
    expected = np.load(folder / "expected.npy")
    error = max_abs_error(output, folder)
    result = {
        "model": compiled.model, "target": compiled.target, "ran_on": ran_on,
        "latency_ms": latency, "samples": len(measured.latencies_ms), "histogram": measured.histogram(),
        "block_size": block_size, "sample_rate": sample_rate,
        "deadline_ms": deadline, "headroom": 1 - latency["median"] / deadline,
        "model_block": compiled.export["block_size"],
        "accuracy": {"max_abs_err": error, "reference": "torch", "tolerance": tolerance(expected),
                     "within_tolerance": error <= tolerance(expected)},
        "format": compiled.format, "memory": memory(compiled, measured),
        "dispatches": measured.dispatches,
        "flags": compiled.flags,
    }
    if (folder / KERNEL_REPORT).exists():   # Bela: each dispatch's NEON/VFP mix and C library calls
        result["kernels"] = json.loads((folder / KERNEL_REPORT).read_text())
    if ran_on == "emulator":
        result["note"] = EMULATED_NOTE
        result["emulated_cpu"] = TARGETS[compiled.target].core
    return result


def memory(compiled: CompileResult, measured: Measurement) -> dict:
    """The artifact the board gets (the .vmfb, or the EmitC module's library) and the peak IREE
    allocated (vmfb: iree-benchmark-module's statistics; not measured for EmitC)."""
    folder = compiled.folder
    if compiled.format == "emitc":
        return {"artifact_bytes": (folder / EMITC_LIBRARY).stat().st_size, "peak_bytes": measured.peak_bytes,
                **({"module_c_bytes": (folder / "module.c").stat().st_size} if (folder / "module.c").exists() else {})}
    return {"artifact_bytes": compiled.artifacts[0].stat().st_size, "peak_bytes": measured.peak_bytes}


def measure_peers(model_file: Path, seconds: float = 1.0, ours: list[str] | None = None) -> dict:
    """The peers' figures; with `ours` (an iree-benchmark-module argv) ours too, in turns with them."""
    argv = [sys.executable, "-m", "service.bench.peers", str(model_file), "--seconds", str(seconds)]
    if ours:
        argv += ["--ours", json.dumps(ours)]
    result = run_tool(argv, timeout=PEERS_TIMEOUT, stage="benchmarking")
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        reason = f"the peers process died (exit code {result.returncode})"
        return {peer: {"error": reason} for peer in PEERS}


def add_peer_ratios(result: dict, peers: dict) -> dict:
    """Each peer's median and how many times faster we are (peer / ours; >1 means we win),
    against our side-by-side figure when there is one."""
    side_by_side = peers.pop("ours", None)
    if side_by_side and "median_ms" in side_by_side:
        result["side_by_side_ms"] = side_by_side["median_ms"]
    ours = result.get("side_by_side_ms", result["latency_ms"]["median"])
    for figures in peers.values():
        if "median_ms" in figures:
            figures["ours_speedup"] = figures["median_ms"] / ours
    result["peers"] = peers
    if result["ran_on"] != "host":
        result["peers_note"] = "peers ran natively on this machine; our figure did not"
    return result


def bench_model(model_file: Path, options: CompileOptions, out_dir: Path, *, peers: bool = False,
                block_size: int | None = None, sample_rate: int | None = None, seconds: float = 2.0,
                period: int | None = None, glue: str = "auto") -> dict:
    """Compile (vmfb: with the measured fastest flags unless options name a variant) and measure."""
    if options.format == "vmfb" and options.variant is None:
        from .tuning import compile_tuned
        compiled = compile_tuned(model_file, options, out_dir)
    else:
        compiled = compile_model(model_file, options, out_dir)
    result = bench_compiled(compiled, options.target, block_size=block_size, sample_rate=sample_rate, seconds=seconds,
                            period=period, glue=glue)
    result["variant"], result["tuning"] = compiled.variant, compiled.tuning
    if peers:
        add_peer_ratios(result, measure_peers_beside(compiled, options.target, model_file, result, seconds))
    return result


def measure_peers_beside(compiled: CompileResult, target: Target, model_file: Path, result: dict,
                         seconds: float) -> dict:
    """The peers and, where ours runs natively, ours again in turns with them (PEERS_ROUNDS rounds
    of about seconds / PEERS_ROUNDS each)."""
    prefix, ran_on = tool_command(target, "iree-benchmark-module")
    if ran_on != "host" or compiled.format != "vmfb":
        return measure_peers(model_file, seconds)
    folder = compiled.folder
    with tempfile.TemporaryDirectory(prefix="bela-iree-peers-") as tmp:
        inputs = [str(p) for p in input_files(folder, Path(tmp))]
        calls = repetitions_for(result["latency_ms"]["median"], seconds / PEERS_ROUNDS)
        ours = prefix + benchmark_argv(str(folder / "model.vmfb"), inputs, calls, dispatches=False)
        return measure_peers(model_file, seconds, ours)


def headline_is_estimate(result: dict) -> bool:
    """For a board target with no board attached, the estimate from counted work is the figure
    that says whether the model fits; the emulator's wall time is not the board's."""
    return result.get("ran_on") == "emulator" and "ms" in result.get("estimate", {})


def fit_verdict(result: dict) -> str:
    """Does the model fit in the audio block? The one place this is decided and worded: the
    command line prints it (`verdict`), the panel shows it (the builder puts it in each bench
    message as "verdict") and adds what was measured and where. Without a board, from the
    estimate (and says so)."""
    if headline_is_estimate(result):
        return estimate_verdict(result["estimate"])
    median, deadline = result["latency_ms"]["median"], result["deadline_ms"]
    if median <= deadline:
        return f"fits: {median:.3g} ms of {deadline:.3g} ms ({100 * result['headroom']:.1f} % headroom)"
    return f"does not fit: {median:.3g} ms for a {deadline:.3g} ms block ({median / deadline:.1f}x over)"


def emulator_line(result: dict) -> str:
    """The emulator's wall time, said for what it is."""
    return (f"emulator wall time: {result['latency_ms']['median']:.3g} ms median under qemu-user on this machine "
            f"({result.get('emulated_cpu', 'emulated')}; not a board timing, not the verdict)")


def verdict(result: dict) -> str:
    """The command line's verdict line: the estimate first for a board without a board attached."""
    estimate = result.get("estimate", {})
    if headline_is_estimate(result):
        split = runtime_split_line(estimate)
        return f"{fit_verdict(result)}{split}\n{emulator_line(result)}{streaming_verdict(result.get('streaming'))}"
    where = " (emulated: not a board timing)" if result["ran_on"] == "emulator" else ""
    beside = f"\n{estimate_verdict(estimate)}" if "ms" in estimate else ""
    return f"{fit_verdict(result)}{where}{beside}{streaming_verdict(result.get('streaming'))}"


def runtime_split_line(estimate: dict) -> str:
    """How a call's counted instructions split between the kernels and IREE's runtime."""
    if "runtime_instructions" not in estimate:
        return ""
    return (f"\n{estimate['instructions']:,} instructions per call: {estimate['kernel_instructions']:,} in the "
            f"kernels, {estimate['runtime_instructions']:,} in IREE's runtime ({estimate['dispatches']} dispatches)")


def streaming_verdict(stream: dict | None) -> str:
    """A stateful model whose K blocks in a row drift from PyTorch's: said under the verdict."""
    if not stream or stream["within_tolerance"]:
        return ""
    first = next(k for k, error in enumerate(stream["per_block"]) if error > stream["tolerance"])
    return (f"\nstreaming differs from PyTorch from block {first + 1} of {stream['blocks']} on "
            f"(max abs error {stream['max_abs_err']:.3g} > {stream['tolerance']:.2g}): the state is not carried as "
            f"PyTorch carries it (ran on: {stream.get('ran_on', 'here')})")

