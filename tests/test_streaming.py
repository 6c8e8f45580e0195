"""bench's streaming proof: a stateful model's compiled module fed K consecutive blocks in one
context (through runtime/'s library, as render() runs it) against PyTorch fed the same blocks
with its state carried; on this computer, emulated aarch64 and emulated Cortex-A8, vmfb and EmitC."""
import copy

import numpy as np
import pytest
import torch

from service.bench.bench import bench_compiled
from service.bench.streaming import measure_streaming
from service.modelfile import load_model
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.stream_reference import STREAM_BLOCKS, STREAM_FILE
from service.pipeline.targets import get_target
from tests.test_state import STATEFUL

STATELESS = '''import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh())
example_input = torch.linspace(-1, 1, 16).reshape(1, 16)
'''


@pytest.fixture(scope="module")
def stateful_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stateful-stream") / "model.py"
    path.write_text(STATEFUL)
    return path


@pytest.fixture(scope="module")
def compiled_stateful(stateful_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("stateful-compiled")
    results = {}

    def compile_once(target: str, fmt: str = "vmfb"):
        if (target, fmt) not in results:
            options = CompileOptions(get_target(target), fmt, variant="default" if fmt == "vmfb" else None)
            results[target, fmt] = compile_model(stateful_file, options, out / f"{target}-{fmt}")
        return results[target, fmt]
    return compile_once


def test_stream_reference_is_pytorch_with_state_carried(stateful_file, compiled_stateful):
    """stream.npz holds K blocks and PyTorch's outputs for them in turn; they differ from what a
    model starting afresh at each block gives, so a module that dropped its state would fail."""
    folder = compiled_stateful("host").folder
    with np.load(folder / STREAM_FILE) as stream:
        blocks, expected = stream["input0"], stream["expected"]
    assert blocks.shape == (STREAM_BLOCKS, 1, 8) and expected.shape == (STREAM_BLOCKS, 1, 8)
    module = load_model(stateful_file).module
    with torch.no_grad():
        carried = [module(torch.from_numpy(b)).numpy() for b in blocks]
        afresh = [copy.deepcopy(load_model(stateful_file).module)(torch.from_numpy(b)).numpy() for b in blocks]
    assert np.abs(np.stack(carried) - expected).max() < 1e-6
    assert all(np.abs(afresh[k] - expected[k]).max() > 0.1 for k in range(1, STREAM_BLOCKS))


def test_bench_reports_streaming_and_glue_latency_on_this_computer(compiled_stateful):
    result = bench_compiled(compiled_stateful("host"), get_target("host"), repetitions=20)
    stream = result["streaming"]
    assert stream["blocks"] == STREAM_BLOCKS >= 8 and len(stream["per_block"]) == STREAM_BLOCKS
    assert stream["within_tolerance"] and stream["max_abs_err"] <= stream["tolerance"]
    # microseconds per 8-frame call here: inside render() at an 8-frame period, nothing added
    assert result["glue"] == "render" and result["latency_samples"] == 0
    assert result["state"]["reset"] == "reset"


def test_stateless_bench_has_latency_samples_and_no_streaming(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(STATELESS)
    compiled = compile_model(path, CompileOptions(get_target("host"), "vmfb", variant="default"), tmp_path / "out")
    result = bench_compiled(compiled, get_target("host"), repetitions=20)
    assert result["glue"] == "render" and result["latency_samples"] == 0 and "streaming" not in result
    assert not (tmp_path / "out" / STREAM_FILE).exists() and compiled.export["state"] is None


@pytest.mark.parametrize("target,fmt", [("gem", "vmfb"), ("bela", "vmfb"), ("host", "emitc"), ("bela", "emitc")])
def test_streaming_matches_pytorch_on_every_runtime(compiled_stateful, target, fmt):
    """aarch64 and Cortex-A8 under qemu-user (the board's core), and the EmitC module linked in."""
    stream = measure_streaming(compiled_stateful(target, fmt), get_target(target))
    assert stream["blocks"] == STREAM_BLOCKS and stream["within_tolerance"], stream


def test_reset_puts_the_state_back_to_its_start(stateful_file, compiled_stateful, tmp_path):
    """bela_iree_model_reset before block 4: from there the module matches PyTorch started afresh at block 4."""
    from service.bench.streaming import run_stream, vmfb_program

    folder = compiled_stateful("host").folder
    program = vmfb_program(get_target("host"), tmp_path)
    output, expected = run_stream([str(program)], folder, tmp_path, str(folder / "model.vmfb"), ("--reset-at", "4"))
    with np.load(folder / STREAM_FILE) as stream:
        blocks = stream["input0"]
    fresh = load_model(stateful_file).module
    with torch.no_grad():
        restarted = np.stack([fresh(torch.from_numpy(b)).numpy() for b in blocks[4:]])
    assert np.abs(output[:4] - expected[:4]).max() < 1e-4
    assert np.abs(output[4:] - restarted).max() < 1e-4
    assert np.abs(restarted - expected[4:]).max() > 0.1   # the reset changed what came out


def test_emitc_bench_of_a_stateful_model_checks_accuracy_from_the_starting_state(compiled_stateful):
    """The timed runs move the state on; the output compared with PyTorch's first call is the one
    made right after a reset."""
    result = bench_compiled(compiled_stateful("host", "emitc"), get_target("host"), repetitions=20)
    assert result["accuracy"]["within_tolerance"] and result["streaming"]["within_tolerance"]


TWO_IN_TWO_OUT = '''import torch
from torch import nn

INPUTS = ("audio", "knobs")
OUTPUTS = ("audio", "control")


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("level", torch.zeros(1, 1))

    def forward(self, block, knobs):
        level = 0.5 * self.level + 0.5 * block.abs().mean(dim=-1, keepdim=True)
        self.level.copy_(level)
        return block * knobs[:, :1] + level, torch.cat([level, knobs.sum(dim=-1, keepdim=True)], dim=-1)


model = Mixer()
example_input = (torch.linspace(-1, 1, 16).reshape(1, 16), torch.tensor([[0.5, 0.25]]))
'''


@pytest.mark.parametrize("target", ["host", "gem"])
def test_several_inputs_and_outputs_stream_and_run(tmp_path, target):
    """Two inputs (a block and knobs) and two outputs, routed by INPUTS/OUTPUTS: exported with their
    sources and destinations, run once (iree-run-module, outputs joined) and streamed (runtime/'s
    library with --output-sizes) against PyTorch."""
    from service.bench.run import max_abs_error, run_module, tolerance

    path = tmp_path / "model.py"
    path.write_text(TWO_IN_TWO_OUT)
    compiled = compile_model(path, CompileOptions(get_target(target), "vmfb", variant="default"), tmp_path / "out")
    info = compiled.export
    assert [i.get("source") for i in info["inputs"]] == ["audio", "knobs"]
    assert [(o["shape"], o["destination"]) for o in info["outputs"]] == [([1, 16], "audio"), ([1, 2], "control")]
    folder = compiled.folder
    output = run_module(folder, get_target(target))
    assert output.shape == (18,) and max_abs_error(output, folder) <= tolerance(np.load(folder / "expected.npy"))
    stream = measure_streaming(compiled, get_target(target))
    assert stream["blocks"] == STREAM_BLOCKS and stream["within_tolerance"], stream


def test_a_wrong_routing_names_the_line(tmp_path):
    from service.errors import ModelFileError
    from service.pipeline.export import export_model

    path = tmp_path / "model.py"
    path.write_text(TWO_IN_TWO_OUT.replace('INPUTS = ("audio", "knobs")', 'INPUTS = ("audio", "slider")'))
    with pytest.raises(ModelFileError) as error:
        export_model(path, tmp_path / "out")
    assert error.value.line == 4 and "INPUTS must be a tuple of audio, analog, knobs, noise" in error.value.message


def test_bench_and_projects_do_not_import_torch():
    """The streaming check reads stream.npz without torch: the service's own process stays light
    (torch runs in the export process)."""
    import subprocess
    import sys

    code = "import sys, service.bench.bench, service.project; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
