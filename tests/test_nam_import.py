"""Neural Amp Modeler captures, made with NAM's own exporter, imported as streaming models: block
after block they equal NAM's PyTorch model run on the whole signal with its zero padding."""
from __future__ import annotations

import json

import pytest
import torch

from service.errors import ModelFileError
from service.nam import read_capture, streaming_capture
from tests import nam_reference as nam

TOLERANCE = 1e-4


def streamed(capture, signal: torch.Tensor, blocks: list[int]) -> torch.Tensor:
    """The capture's streaming module run over `signal` in blocks of the given sizes, in turn."""
    module = streaming_capture(capture, blocks[0]).model
    outputs, at, turn = [], 0, 0
    with torch.no_grad():
        while at < signal.shape[1]:
            size = blocks[turn % len(blocks)]
            outputs.append(module(signal[:, at:at + size]))
            at, turn = at + size, turn + 1
    return torch.cat(outputs, dim=1)


def guitar(seconds: float = 0.15, rate: int = 48000) -> torch.Tensor:
    """A plucked-string-like test signal: decaying harmonics plus a little noise."""
    generator = torch.Generator().manual_seed(7)
    t = torch.arange(int(seconds * rate)) / rate
    tone = sum(0.6 / k * torch.sin(2 * torch.pi * 110.0 * k * t) for k in range(1, 6)) * torch.exp(-3 * t)
    return (tone + 0.05 * torch.randn(t.shape, generator=generator)).unsqueeze(0)


@pytest.mark.parametrize("name", list(nam.ARCHITECTURES))
def test_wavenet_presets_stream_like_nam(name, tmp_path):
    capture = nam.export_capture(nam.make_wavenet(nam.ARCHITECTURES[name]()), tmp_path, name)
    signal = guitar()
    expected = nam.reference_output(capture, signal)
    got = streamed(capture, signal, [128, 16, 64])
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < TOLERANCE
    assert expected.abs().max().item() > 10 * TOLERANCE      # a signal, not silence


GATED = {"name": "PairMultiply", "primary": "Tanh", "secondary": "Sigmoid"}   # what "gated" was before 0.7


@pytest.mark.parametrize("layer_options", [
    {"activation": GATED},
    {"activation": {"name": "PairBlend", "primary": "Tanh", "secondary": "Sigmoid"}},
    {"activation": "ReLU", "kernel_size": 2},
    {"activation": "LeakyReLU", "bottleneck": 2, "head_1x1_config": {"active": True, "out_channels": 3, "groups": 1}},
    {"groups_input": 2, "activation": "Hardtanh"},
], ids=["gated", "blended", "relu-kernel2", "bottleneck-head1x1", "grouped"])
def test_wavenet_variants_stream_like_nam(layer_options, tmp_path):
    # the second array's head sum starts with the first's head: its head terms must be as wide
    sizes = [(1, 4, 3), (4, 4, 1)] if "head_1x1_config" in layer_options else [(1, 4, 2), (4, 2, 1)]
    config = nam.wavenet_config(sizes, [[1, 2, 4], [8, 1]], **layer_options)
    capture = nam.export_capture(nam.make_wavenet(config), tmp_path, "variant")
    signal = guitar(0.02)
    assert (streamed(capture, signal, [64, 32]) - nam.reference_output(capture, signal)).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("gated", [False, True])
def test_a_pre_06_file_with_flat_heads_streams_like_nam(gated, tmp_path):
    """NAM 0.13 itself refuses a 0.5 file; its weights are the same as the 0.7 export's, so the
    0.7 file run by NAM is the reference for the 0.5 one run by bela-iree."""
    config = nam.wavenet_config([(1, 4, 2), (4, 2, 1)], [nam.SHORT, nam.LONG], **({"activation": GATED} if gated else {}))
    modern = nam.export_capture(nam.make_wavenet(config, seed=3), tmp_path, "modern")
    old = nam.as_pre_06(modern, tmp_path / "old.nam")
    layer = json.loads(old.read_text())["config"]["layers"][0]
    assert "head" not in layer and "head_size" in layer and "head_bias" in layer and layer["gated"] == gated
    with pytest.raises(KeyError):
        nam.nam_models().init_from_nam(json.loads(old.read_text()))
    capture = read_capture(old)
    assert (capture.version, capture.sample_rate) == ("0.5.2", 48000)
    signal = guitar(0.05)
    assert (streamed(old, signal, [128]) - nam.reference_output(modern, signal)).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("hidden, layers", [(3, 1), (8, 2)])
def test_lstm_streams_like_nam(hidden, layers, tmp_path):
    capture = nam.export_capture(nam.make_lstm(hidden, layers), tmp_path, "lstm")
    signal = guitar(0.02)
    expected = nam.reference_output(capture, signal)
    assert (streamed(capture, signal, [128, 16]) - expected).abs().max().item() < TOLERANCE


def test_the_state_starts_at_the_response_to_silence(tmp_path):
    """The buffers the compiled module starts (and resets) from are the layers' steady response
    to silence: more silence changes nothing, and they are not zeros."""
    capture = nam.export_capture(nam.make_wavenet(nam.ARCHITECTURES["nano"]()), tmp_path, "nano")
    module = streaming_capture(capture, 128).model
    start = {name: b.clone() for name, b in module.named_buffers()}
    assert any(b.abs().max() > 1e-3 for b in start.values())
    with torch.no_grad():
        silence_out = module(torch.zeros(1, 128))
    assert all(torch.allclose(b, start[name], atol=1e-6) for name, b in module.named_buffers())
    expected = nam.reference_output(capture, torch.zeros(1, 128))
    assert (silence_out - expected).abs().max().item() < TOLERANCE


def _capture_json(tmp_path, **changes) -> dict:
    capture = nam.export_capture(nam.make_wavenet(nam.ARCHITECTURES["nano"]()), tmp_path, "nano")
    data = json.loads(capture.read_text())
    data.update(changes)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(architecture="SlimmableWaveNet"), "architecture 'SlimmableWaveNet'"),
    (lambda d: d["config"]["layers"][0]["conv_pre_film"].update(active=True), "FiLM (conv_pre_film)"),
    (lambda d: d["config"].update(condition_dsp={"name": "WaveNet"}), "condition DSP"),
    (lambda d: d["config"]["layers"][0].update(activation="Mish"), "activation 'Mish'"),
    (lambda d: d["weights"].pop(), "fewer than its config needs"),
    (lambda d: d["weights"].append(0.5), "its config uses"),
], ids=["architecture", "film", "condition-dsp", "activation", "short", "long"])
def test_a_layout_it_cannot_take_is_refused_with_what_it_is(change, message, tmp_path):
    data = _capture_json(tmp_path)
    change(data)
    path = tmp_path / "odd.nam"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError) as error:
        read_capture(path)
    assert message in error.value.message
    assert error.value.file == str(path)


def test_a_file_that_is_not_a_capture_names_the_line(tmp_path):
    path = tmp_path / "broken.nam"
    path.write_text('{"version": "0.5.2",\n "architecture": "WaveNet",\n "weights": [1, 2,]}')
    with pytest.raises(ModelFileError) as error:
        read_capture(path)
    assert "invalid JSON" in error.value.message and error.value.line == 3


def test_a_broken_capture_in_a_project_is_reported_at_its_own_line(tmp_path):
    """model.py loads the copied capture each time; a capture broken after `new` is an error
    with the capture's path and JSON line, not the line of model.py that loaded it."""
    from service.modelfile import load_model
    from service.nam.model_file import write_project_model
    capture = nam.export_capture(nam.make_wavenet(nam.ARCHITECTURES["nano"]()), tmp_path / "made", "amp")
    project = tmp_path / "project"
    project.mkdir()
    model_file = write_project_model(capture, project)
    assert load_model(model_file).example_input.shape == (1, 128)
    (project / "amp.nam").write_text('{"architecture": "WaveNet",\n "weights": [0.1,\n ]}')
    with pytest.raises(ModelFileError) as error:
        load_model(model_file)
    assert (error.value.file, error.value.line) == (str(project / "amp.nam"), 3)
