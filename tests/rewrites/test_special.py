"""special.py: special functions as float32 approximations, many in one model (one compile), over wide ranges."""
import torch

from .cases import assert_compiles_and_matches_on_iree, write_model
from service.modelfile import load_model
from service.pipeline import rewrites

# x spans [-30, 30]; each function gets the part of it where its float32 value is finite
FORWARD = """lambda m, x: torch.stack([
    torch.lgamma(x), torch.digamma(x), torch.polygamma(1, x), torch.polygamma(3, x / 4),
    torch.mvlgamma(x.abs() + 2, 3), torch.erfinv(torch.tanh(x / 4)), torch.special.ndtri(torch.sigmoid(x)),
    torch.special.erfcx(x / 3), torch.special.log_ndtr(x), torch.i0(x), torch.special.i0e(x),
    torch.special.i1(x), torch.special.i1e(x), torch.special.bessel_j0(x), torch.special.bessel_j1(x),
    torch.special.bessel_y0(x.abs()), torch.special.bessel_y1(x.abs()), torch.special.modified_bessel_k0(x.abs() / 4),
    torch.special.scaled_modified_bessel_k1(x.abs()), torch.special.spherical_bessel_j0(x),
    torch.special.zeta(x.abs() / 3 + 1.5, x.abs() / 2 + 0.1),
    torch.special.chebyshev_polynomial_t(x / 30, x.abs()), torch.special.hermite_polynomial_he(x / 10, 5),
    torch.special.laguerre_polynomial_l(x / 3, x.abs() / 3), torch.special.legendre_polynomial_p(x / 30, x.abs()),
    torch.special.shifted_chebyshev_polynomial_u(x / 60 + 0.5, x.abs() / 2)])"""
CASE = ("torch.nn.Identity()", FORWARD, "torch.linspace(-30, 30, 1201) + 0.0123")


def relative_error(actual, expected):
    return float(((actual - expected).abs() / (1e-4 + 1e-4 * expected.abs())).nan_to_num(0).max())


def test_special_functions_match_float64_pytorch(tmp_path):
    loaded = load_model(write_model(tmp_path, "special", CASE))
    program = torch.export.export(loaded.module, (loaded.example_input,))
    rewritten, applied, _ = rewrites.apply(program, loaded.example_input)
    assert applied
    with torch.no_grad():
        actual = rewritten.module()(loaded.example_input).double()
        expected = loaded.module.to(torch.float64)(loaded.example_input.double())
        eager = loaded.module(loaded.example_input).double()
    assert torch.equal(actual.isnan(), eager.isnan()) and torch.equal(actual.isinf(), eager.isinf())
    finite = expected.isfinite() & (expected.abs() < 1e38)
    rows = [relative_error(a[f], e[f]) for a, e, f in zip(actual, expected, finite)]
    assert max(rows) <= 1, rows   # within 1e-4 + 1e-4 |expected| of the float64 value, row by row


def test_special_functions_compile_and_match_on_iree(tmp_path):
    assert_compiles_and_matches_on_iree(write_model(tmp_path, "special", CASE), tmp_path / "out")
