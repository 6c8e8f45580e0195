"""The audio op set (service/pipeline/audio_ops.py) exports, compiles and matches PyTorch, entry by
entry, on this computer and on emulated aarch64 (the Bela Gem): all entries in one model, so one
export and one compile per target."""
import numpy as np
import pytest
import torch

from service.bench.run import run_module, tolerance
from service.modelfile import load_model
from service.pipeline import audio_ops
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.targets import TARGETS


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio_ops") / "model.py"
    path.write_text(audio_ops.model_source())
    loaded = load_model(path)
    with torch.no_grad():
        expected = {name: value.numpy() for name, value in loaded.module.outputs(loaded.example_input).items()}
    return path, expected


@pytest.mark.parametrize("target", ["host", "gem"])
def test_audio_op_set_matches_pytorch(audio_model, tmp_path, target):
    path, expected = audio_model
    result = compile_model(path, CompileOptions(TARGETS[target]), tmp_path / "out")
    output = run_module(result.folder, TARGETS[target]).reshape(-1)
    assert output.size == sum(v.size for v in expected.values())
    wrong, start = {}, 0
    for name, values in expected.items():
        ours = output[start:start + values.size]
        start += values.size
        error = float(np.max(np.abs(ours - values)))
        if not error <= tolerance(values):
            wrong[name] = error
    assert not wrong, f"entries that do not match PyTorch on {target}: {wrong}"
    assert set(expected) == set(audio_ops.AUDIO_OPS)
