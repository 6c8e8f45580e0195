"""The peers carry a stateful model's state as ours does: ONNX Runtime through explicit state
inputs and outputs, each call's new state fed into the next (checked against PyTorch)."""
import copy

import numpy as np
import torch

from service.bench import peers
from service.modelfile import load_model
from tests.test_state import STATEFUL


def test_onnxruntime_peer_of_a_stateful_model_carries_its_state(tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text(STATEFUL)
    loaded = load_model(path)
    with torch.no_grad():
        pytorch = copy.deepcopy(loaded.module)
        expected = [pytorch(*loaded.example_inputs).numpy() for _ in range(3)]
        afresh = copy.deepcopy(loaded.module)(*loaded.example_inputs).numpy()   # a stateless run: call 1 again
        call = peers.onnxruntime(copy.deepcopy(loaded.module), loaded.example_inputs)
    outputs = [call()[0] for _ in range(3)]
    assert np.abs(afresh - expected[1]).max() > 0.1
    for output, reference in zip(outputs, expected):
        assert np.abs(output - reference).max() < 1e-5
