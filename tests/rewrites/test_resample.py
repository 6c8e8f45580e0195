"""resample.py: F.interpolate's linear modes and nearest-exact as gathers, as PyTorch computes them."""
import pytest

from .cases import assert_compiles_and_matches_on_iree, case_tests, write_model

CASES = {
    "linear_1d_scale": ("torch.nn.Upsample(scale_factor=4, mode='linear')", "lambda m, x: m(x)", "torch.randn(1, 3, 16)"),
    "linear_1d_size_align_corners": ("torch.nn.Identity()",
                                     "lambda m, x: torch.nn.functional.interpolate(x, size=37, mode='linear', "
                                     "align_corners=True)", "torch.randn(2, 2, 10)"),
    "linear_1d_down_fractional": ("torch.nn.Identity()",
                                  "lambda m, x: torch.nn.functional.interpolate(x, scale_factor=0.37, mode='linear')",
                                  "torch.randn(1, 2, 50)"),
    "bilinear_2d_scale": ("torch.nn.Identity()",
                          "lambda m, x: torch.nn.functional.interpolate(x, scale_factor=(1.7, 2), mode='bilinear')",
                          "torch.randn(1, 2, 5, 7)"),
    "bilinear_2d_size_align_corners": ("torch.nn.Identity()",
                                       "lambda m, x: torch.nn.functional.interpolate(x, size=(9, 4), "
                                       "mode='bilinear', align_corners=True)", "torch.randn(1, 3, 6, 6)"),
    "nearest_exact_1d": ("torch.nn.Identity()",
                         "lambda m, x: torch.nn.functional.interpolate(x, size=11, mode='nearest-exact')",
                         "torch.randn(1, 3, 7)"),
    "nearest_exact_2d": ("torch.nn.Identity()",
                         "lambda m, x: torch.nn.functional.interpolate(x, scale_factor=1.5, mode='nearest-exact')",
                         "torch.randn(1, 1, 5, 6)"),
}

test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)

# plain nearest needs no rewrite: IREE lowers it and matches PyTorch
NEAREST = {
    "nearest_1d": ("torch.nn.Upsample(scale_factor=3)", "lambda m, x: m(x)", "torch.randn(1, 3, 7)"),
    "nearest_2d_size": ("torch.nn.Identity()", "lambda m, x: torch.nn.functional.interpolate(x, size=(9, 4))",
                        "torch.randn(1, 2, 5, 7)"),
}


@pytest.mark.parametrize("name", NEAREST)
def test_nearest_compiles_and_matches_on_iree(tmp_path, name):
    assert_compiles_and_matches_on_iree(write_model(tmp_path, name, NEAREST[name]), tmp_path / "out")
