"""special.py: special functions as float32 approximations, several in one model (one compile), over
wide ranges; each row within 1e-4 + 1e-4 |value| of PyTorch after IREE, NaN and inf where PyTorch has them.
(Each function was checked more widely, against float64, when it was written.)"""
import numpy as np

from service.bench.run import run_module
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.targets import TARGETS

from .cases import write_model

# x spans [-30, 30]: values up to 1e12 (i0), lgamma and digamma's poles, the negative axis
FORWARD = ("lambda m, x: torch.stack([torch.lgamma(x), torch.digamma(x), torch.erfinv(x / 30.1), torch.i0(x), "
           "torch.special.bessel_j0(x), torch.special.chebyshev_polynomial_t(x / 30, 7)])")
CASE = ("torch.nn.Identity()", FORWARD, "torch.linspace(-30, 30, 601) + 0.0123")


def test_special_functions_compile_and_match_pytorch_on_iree(tmp_path):
    folder = compile_model(write_model(tmp_path, "special", CASE), CompileOptions(TARGETS["host"]), tmp_path / "out").folder
    expected = np.load(folder / "expected.npy")
    actual = run_module(folder, TARGETS["host"]).reshape(expected.shape)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(actual), np.isinf(expected))
    finite = np.isfinite(expected)
    for row, (a, e, f) in enumerate(zip(actual, expected, finite)):
        assert np.all(np.abs(a[f] - e[f]) <= 1e-4 + 1e-4 * np.abs(e[f])), row
