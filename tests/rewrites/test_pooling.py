"""pooling.py: ceil-mode max pooling (mis-sized by IREE) as padding plus floor mode, exact."""
from .cases import case_tests

CASES = {
    "max_pool1d_ceil": ("torch.nn.MaxPool1d(3, stride=2, ceil_mode=True)", "lambda m, x: m(x)", "torch.randn(1, 2, 10)"),
    "max_pool1d_ceil_indices": ("torch.nn.Identity()",
                                "lambda m, x: sum(torch.nn.functional.max_pool1d(x, 3, stride=2, ceil_mode=True, "
                                "return_indices=True))", "torch.randn(1, 2, 3)"),
    "max_pool2d_ceil_indices_padded": ("torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True, return_indices=True)",
                                       "lambda m, x: torch.cat([v.reshape(-1) for v in m(x)]).float()",
                                       "torch.randn(1, 2, 6, 7)"),
}

test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)
