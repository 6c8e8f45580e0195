"""recurrent_kernel.py: which layers become one dispatch of our own (their results against PyTorch
and after IREE are test_recurrent.py's cases)."""
import pytest
import torch

from service.pipeline import rewrites
from service.pipeline.rewrites import recurrent_kernel


def kernel_calls(layer: torch.nn.Module, example: torch.Tensor) -> int:
    program = torch.export.export(layer, (example,))
    rewritten, applied, _ = rewrites.apply(program, example)
    assert applied
    ops = (torch.ops.bela_recurrence.layer_h.default, torch.ops.bela_recurrence.layer_hc.default)
    return sum(node.target in ops for node in rewritten.graph.nodes)


@pytest.mark.parametrize("layer,calls", [
    (torch.nn.LSTM(3, 16, num_layers=2, bidirectional=True), 4),   # one per layer and direction
    (torch.nn.GRU(3, recurrent_kernel.MAX_HIDDEN), 1),
    (torch.nn.RNN(3, recurrent_kernel.MAX_HIDDEN + 1), 0),         # wider: IREE's own matmuls
])
def test_each_small_layer_and_direction_is_one_kernel(layer, calls):
    assert kernel_calls(layer, torch.randn(6, 1, 3)) == calls


def test_the_kernel_is_one_stream_executable_dispatched_once():
    text = recurrent_kernel.kernel_mlir("gru", reverse=True, steps=6, batch=2, hidden=24)
    assert text.count("stream.executable private") == 1 and text.count("flow.dispatch") == 1
    assert "math." not in text.replace("math.absf", "").replace("math.copysign", "")   # no fmaf calls on armv7
