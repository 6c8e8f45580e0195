"""The zoo's real-time models, streamed: each compiled artifact fed K consecutive blocks in one
context (runtime/'s library, as render() runs it) equals the PyTorch module fed the same K blocks
with its state carried, and, the causal audio ones, PyTorch run on the whole signal at once. On
this computer, emulated aarch64 (Cortex-A53) and emulated Bela (Cortex-A8)."""
import numpy as np
import pytest
import torch

import zoo
from service.bench.run import tolerance
from service.bench.streaming import run_stream, vmfb_program
from service.bench.runtime_tools import emulator
from service.modelfile import load_model
from service.pipeline.export import NOISE_SEED
from service.pipeline.stream_reference import STREAM_BLOCKS, STREAM_FILE
from service.pipeline.targets import get_target

# audio in, audio out, causal: K blocks in a row are one signal
CAUSAL = ["lstm_amp", "wavenet_amp"]
# several inputs, changing from block to block
CONDITIONED = ["gru_knobs", "mdrnn_control"]
TARGETS = ["host", "gem", "bela"]


@pytest.fixture(scope="session")
def stream_program(tmp_path_factory):
    programs = {}

    def build(target: str) -> list[str]:
        if target not in programs:
            program = vmfb_program(get_target(target), tmp_path_factory.mktemp(f"stream-{target}"))
            native = get_target(target).arch == "x86_64"
            programs[target] = [str(program)] if native else [*emulator(get_target(target)), str(program)]
        return programs[target]
    return build


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", CONDITIONED)
def test_conditioned_model_streams_as_pytorch_with_its_state_carried(compiled, stream_program, model, target, tmp_path):
    """gru_knobs (audio + knobs that change from block to block) and mdrnn_control (its gesture,
    and its random draws as inputs, new each block): K blocks against PyTorch fed the same."""
    folder = compiled(model, target).folder
    output, expected = run_stream(stream_program(target), folder, tmp_path, str(folder / "model.vmfb"))
    assert output.shape == expected.shape and expected.shape[0] == STREAM_BLOCKS
    assert np.abs(output - expected).max() <= tolerance(expected), model
    # the state matters: PyTorch restarted at block 3 differs from the carried stream there
    with np.load(folder / STREAM_FILE) as stream:
        inputs = [torch.from_numpy(stream[f"input{i}"][3]) for i in range(len(stream.files) - 1)]
    fresh = load_model(zoo.model_path(model))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(NOISE_SEED + 3)
        afresh = fresh.module(*inputs[:len(fresh.example_inputs)]).numpy()
    assert np.abs(afresh - expected[3]).max() > 10 * tolerance(expected)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", CAUSAL)
def test_causal_model_streams_as_pytorch_does_on_the_whole_signal(compiled, stream_program, model, target, tmp_path):
    folder = compiled(model, target).folder
    output, expected = run_stream(stream_program(target), folder, tmp_path, str(folder / "model.vmfb"))
    assert output.shape == expected.shape == (STREAM_BLOCKS, 1, 128)
    # block by block, state carried (PyTorch's own stream, kept at export)
    assert np.abs(output - expected).max() <= tolerance(expected), model
    with np.load(folder / STREAM_FILE) as stream:
        blocks = stream["input0"]
    # the whole signal at once through a fresh copy of the model: the same samples
    with torch.no_grad():
        whole = load_model(zoo.model_path(model)).module(torch.from_numpy(np.concatenate(list(blocks), axis=-1)))
    streamed = np.concatenate(list(output), axis=-1)
    assert np.abs(streamed - whole.numpy()).max() <= tolerance(whole.numpy()), model
    # a module that forgot its state at each block would be caught: a fresh start differs
    with torch.no_grad():
        afresh = load_model(zoo.model_path(model)).module(torch.from_numpy(blocks[3])).numpy()
    assert np.abs(afresh - expected[3]).max() > 10 * tolerance(expected)
