"""linear.py: one-row Linears over packed weights, two Linears in a row folded into one, exact."""
import torch

from service.pipeline import rewrites

from .cases import case_tests

CASES = {
    # one-row Linears: outputs a multiple of the block, and more than four blocks' worth but not a multiple (padded)
    "one_row_linears": ("torch.nn.Sequential(torch.nn.Linear(200, 256), torch.nn.Tanh(), torch.nn.Linear(256, 600))",
                        "lambda m, x: m(x)", "torch.randn(1, 1, 200)"),
    # two heads on one input: one packed weight, one product, sliced
    "one_row_linears_sharing_input": ("torch.nn.ModuleList([torch.nn.Linear(64, 128), torch.nn.Linear(64, 256)])",
                                      "lambda m, x: torch.cat([m[0](x), torch.tanh(m[1](x))], -1)",
                                      "torch.randn(1, 64)"),
    # an 8 -> 64 embedding read by a 64 -> 32 Linear after a transpose, and by a residual
    "linears_in_a_row": ("torch.nn.ModuleList([torch.nn.Linear(8, 64), torch.nn.Linear(64, 32)])",
                         "lambda m, x: (lambda h: m[1](h.transpose(0, 1)).transpose(0, 1) + h[..., :32])(m[0](x))",
                         "torch.randn(3, 5, 8)"),
}


test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)


def test_only_one_row_linears_with_enough_outputs_are_packed():
    cases = {(torch.nn.Linear(64, 256), (1, 64)): True,
             (torch.nn.Linear(64, 600), (1, 1, 64)): True,     # padded to five blocks
             (torch.nn.Linear(64, 256), (2, 64)): False,       # two rows: a matmul, not a matrix-vector product
             (torch.nn.Linear(64, 200), (1, 64)): False}       # 200 outputs would be padded to 256
    for (linear, shape), packed in cases.items():
        x = torch.randn(*shape)
        _, applied, _ = rewrites.apply(torch.export.export(linear.eval(), (x,)), x)
        assert ("one-row Linear as a matrix-vector product over packed weights" in applied) == packed, (linear, shape)


def test_linears_fold_only_when_cheaper_and_rows_stay_whole():
    first, second, shrink, grow = torch.nn.Linear(4, 16), torch.nn.Linear(16, 8), torch.nn.Linear(4, 2), torch.nn.Linear(2, 8)
    cases = [(lambda x: second(first(x).reshape(4, 4, 16)), True),      # rows regrouped, still whole
             (lambda x: second(first(x.reshape(4, 4, 4).transpose(0, 1)).view(16, 16)), True),  # strided input
             (lambda x: second(torch.relu(first(x))), False),             # not linear in between
             (lambda x: grow(shrink(x)), False),                          # 4 -> 2 -> 8: already cheaper
             (lambda x: second(first(x).transpose(0, 1)), False)]         # 16x16: columns become rows
    for forward, folded in cases:
        module = type("Case", (torch.nn.Module,), {"forward": lambda self, x, f=forward: f(x)})().eval()
        module.layers = torch.nn.ModuleList([first, second, shrink, grow])
        x = torch.randn(16, 4)
        rewritten, applied, _ = rewrites.apply(torch.export.export(module, (x,)), x)
        assert (rewrites.LINEAR_FOLD in applied) == folded
        with torch.no_grad():
            torch.testing.assert_close(rewritten.module()(x), module(x), rtol=1e-5, atol=1e-5)
