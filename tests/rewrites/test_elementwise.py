"""elementwise.py: log10 (no symbol on host) and tan (inaccurate near its poles) in forms IREE computes well."""
from .cases import case_tests

CASES = {
    "log10_decibels": ("torch.nn.Identity()", "lambda m, x: 20 * torch.log10(x.abs() + 1e-3)", "torch.randn(2, 64)"),
    # up to ~6000 a hair from the poles, as OpInfo's sample for tan
    "tan_near_poles": ("torch.nn.Identity()", "lambda m, x: torch.tan(x)",
                       "torch.cat([torch.linspace(-7, 7, 101), torch.tensor([1.5706, -1.5706, 4.7122])])"),
    "defined_ops": ("torch.nn.Identity()",
                    "lambda m, x: torch.cat([torch.fmod(x * 3, 1.0), torch.fmod(x, x.flip(-1) + 2), "
                    "torch.copysign(x, x.flip(-1)), torch.copysign(x, x * 0 - 0.0), torch.signbit(x - x.round()).float(), x.roll(5, -1), x.roll((1, -2), (0, 1)), x.roll(3), "
                    "torch.fmax(x, x.flip(-1)), torch.hypot(x, x.flip(-1)), torch.erfc(x), *torch.frexp(x * 1e3), "
                    "(torch.nextafter(x, x.flip(-1)) - x) * 1e7])", "torch.randn(2, 64)"),   # a step of 1 ulp, scaled
}

test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)
