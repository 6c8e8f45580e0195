"""convolution.py: 1-D convolutions as im2col and one matmul, Winograd F(4,3) when wide and
3-tap, one stride-2 convolution for a conv and the AvgPool1d(2) after it."""
import torch

from service.pipeline import rewrites

from .cases import case_tests

CASES = {
    # 3-tap convolutions wide enough for Winograd F(4,3); a batch of two, lengths not a multiple of 4
    "winograd_convolutions": ("torch.nn.Sequential(torch.nn.Conv1d(64, 96, 3, padding=1), torch.nn.ReLU(), "
                              "torch.nn.Conv1d(96, 64, 3))", "lambda m, x: m(x)", "torch.randn(2, 64, 50)"),
}


test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)


def test_convolutions_become_one_matmul_each(tmp_path):
    for conv in (torch.nn.Conv1d(3, 5, 4, stride=2, padding=3, dilation=2), torch.nn.Conv1d(3, 5, 1, bias=False)):
        x = torch.randn(1, 3, 40)
        program = torch.export.export(conv.eval(), (x,))
        rewritten, applied, _ = rewrites.apply(program, x)
        assert applied == ["1-D convolution as im2col and one matmul"]
        calls = [n for n in rewritten.graph.nodes if n.op == "call_function"]
        assert not any("convolution" in str(n.target) for n in calls)
        # one matmul: the weight as (out, in x taps) times the K strided slices stacked (in x taps, length out)
        matmuls = [n for n in calls if n.target == torch.ops.aten.matmul.default]
        assert len(matmuls) == 1
        weight, columns = matmuls[0].args
        taps, length = conv.kernel_size[0], conv(x).shape[-1]
        assert weight.target == torch.ops.aten.reshape.default and list(weight.args[1]) == [5, 3 * taps]
        assert columns.target == torch.ops.aten.reshape.default and list(columns.args[1]) == [1, 3 * taps, length]
        stacked = columns.args[0]
        assert stacked.target == torch.ops.aten.stack.default and len(stacked.args[0]) == taps
        with torch.no_grad():
            torch.testing.assert_close(rewritten.module()(x), conv(x), rtol=1e-5, atol=1e-5)


def test_winograd_only_for_wide_three_tap_convolutions():
    cases = {torch.nn.Conv1d(64, 64, 3, padding=1): "3-tap 1-D convolution as Winograd F(4,3): half the multiply-adds",
             torch.nn.Conv1d(8, 64, 3): "1-D convolution as im2col and one matmul",              # too few channels
             torch.nn.Conv1d(64, 64, 3, stride=2): "1-D convolution as im2col and one matmul",   # strided
             torch.nn.Conv1d(64, 64, 5): "1-D convolution as im2col and one matmul"}             # 5 taps
    for conv, expected in cases.items():
        x = torch.randn(1, conv.in_channels, 37)
        _, applied, _ = rewrites.apply(torch.export.export(conv.eval(), (x,)), x)
        assert applied == [expected], conv


def test_conv_pool_fusion_matches_pytorch():
    cases = [torch.nn.Sequential(torch.nn.Conv1d(4, 16, 9), torch.nn.AvgPool1d(2), torch.nn.ReLU()),       # fused
             torch.nn.Sequential(torch.nn.Conv1d(4, 16, 3, stride=2), torch.nn.AvgPool1d(2))]             # not: stride 2
    expected_rewrites = [["1-D convolution and AvgPool1d(2) as one stride-2 convolution"],
                         ["1-D convolution as im2col and one matmul"]]
    for model, names in zip(cases, expected_rewrites):
        torch.manual_seed(0)
        x = torch.randn(1, model[0].in_channels if isinstance(model, torch.nn.Sequential) else model.in_channels, 101)
        program = torch.export.export(model.eval(), (x,))
        rewritten, applied, _ = rewrites.apply(program, x)
        assert applied == names
        with torch.no_grad():
            torch.testing.assert_close(rewritten.module()(x), model(x), rtol=1e-5, atol=1e-5)
