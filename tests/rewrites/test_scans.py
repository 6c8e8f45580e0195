"""scans.py: cumsum and cumprod compensated, as accurate as PyTorch's double accumulation, on
this computer and on the Bela's armv7 (emulated), against a float64 reference."""
import numpy as np
import pytest
import torch

from service.bench.run import run_module
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.targets import TARGETS

from .cases import case_tests, write_model

CASES = {
    "cumsum_last_dim": ("torch.nn.Identity()", "lambda m, x: torch.cumsum(x, -1)", "torch.randn(2, 300)"),
    "cumsum_first_dim": ("torch.nn.Identity()", "lambda m, x: torch.cumsum(x, 0)", "torch.randn(40, 3)"),
    "cumprod_with_zero": ("torch.nn.Identity()",
                          "lambda m, x: torch.cumprod(torch.cat([x, x.new_zeros(2, 1), x], 1), dim=1)",
                          "1 + torch.randn(2, 50) * 0.05"),
    "cummax_values_and_indices": ("torch.nn.Identity()",
                                  "lambda m, x: torch.cat([torch.cummax(x, -1)[0], torch.cummax(x, -1)[1].float()])",
                                  "torch.randn(2, 37).round()"),   # ties: the latest index, as PyTorch
    "cummin_first_dim": ("torch.nn.Identity()", "lambda m, x: torch.cummin(x, 0)[0] * 2", "torch.randn(20, 3)"),
}

test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)



def test_scans_past_an_inf_stay_inf_on_iree(tmp_path):
    case = ("torch.nn.Identity()", "lambda m, x: torch.cat([torch.cumsum(x, 0), torch.cumprod(x, 0)])",
            "torch.cat([torch.randn(5, 3), torch.full((1, 3), float('inf')), torch.rand(4, 3) + 0.5])")
    result = compile_model(write_model(tmp_path, "inf", case), CompileOptions(TARGETS["host"]), tmp_path / "out")
    folder = result.folder
    expected = np.load(folder / "expected.npy")
    assert np.isinf(expected).any()
    np.testing.assert_allclose(run_module(folder, TARGETS["host"]).reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


# an oscillator's phase over a block (the case) and a slowly decaying envelope
ACCURACY = {
    "cumsum": ("torch.nn.Identity()", "lambda m, x: torch.cumsum(x, -1)", "torch.rand(2, 4096) * 0.06"),
    "cumprod": ("torch.nn.Identity()", "lambda m, x: torch.cumprod(x, -1)", "1 - torch.rand(2, 4096) * 1e-3"),
}


@pytest.mark.parametrize("target", ["host", "bela"])
@pytest.mark.parametrize("name", ACCURACY)
def test_scan_as_accurate_as_pytorch_against_float64(tmp_path, name, target):
    model_file = write_model(tmp_path, name, ACCURACY[name])
    result = compile_model(model_file, CompileOptions(TARGETS[target]), tmp_path / "out")
    folder = result.folder
    x = torch.from_numpy(np.load(folder / "inputs.npz")["arr_0"])
    scan = getattr(torch, name)
    reference = scan(x.double(), -1)
    ours = torch.from_numpy(run_module(folder, TARGETS[target]).reshape(x.shape)).double()
    pytorch_error = float((scan(x, -1).double() - reference).abs().max())
    naive_error = float((_sequential_float32(scan, x) - reference).abs().max())
    our_error = float((ours - reference).abs().max())
    assert naive_error > 5 * pytorch_error   # the case is one where float32 accumulation shows
    assert our_error <= 1.5 * pytorch_error, (our_error, pytorch_error, naive_error)
    print(f"{name} on {target}: max error against float64 {our_error:.2e} (PyTorch float32 {pytorch_error:.2e}, "
          f"sequential float32 {naive_error:.2e})")


def _sequential_float32(scan, x):
    """What an uncompensated float32 scan gives (IREE's own, step by step)."""
    out = torch.empty_like(x)
    acc = x[..., 0].clone()
    out[..., 0] = acc
    for i in range(1, x.shape[-1]):
        acc = acc + x[..., i] if scan is torch.cumsum else acc * x[..., i]
        out[..., i] = acc
    return out.double()
