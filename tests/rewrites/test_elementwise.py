"""elementwise.py: log10 (no symbol on host) and tan (inaccurate near its poles) in forms IREE computes well."""
from .cases import case_tests

CASES = {
    "log10_decibels": ("torch.nn.Identity()", "lambda m, x: 20 * torch.log10(x.abs() + 1e-3)", "torch.randn(2, 64)"),
    # up to ~6000 a hair from the poles, as OpInfo's sample for tan
    "tan_near_poles": ("torch.nn.Identity()", "lambda m, x: torch.tan(x)",
                       "torch.cat([torch.linspace(-7, 7, 101), torch.tensor([1.5706, -1.5706, 4.7122])])"),
}

test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)
