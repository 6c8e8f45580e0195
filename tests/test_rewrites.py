"""Each rewrite of rewrites.py is exact: same outputs as PyTorch, in PyTorch and after IREE."""
import textwrap

import numpy as np
import pytest
import torch

from service.bench.run import max_abs_error, run_module, tolerance
from service.modelfile import load_model
from service.pipeline import rewrites
from service.pipeline.compile import compile_model
from service.pipeline.targets import TARGETS

CASES = {
    "rnn_two_layers_bidirectional": ("torch.nn.RNN(3, 16, num_layers=2, bidirectional=True, batch_first=True)",
                                     "lambda m, x: m(x)[0]", "torch.randn(2, 70, 3)"),  # > UNROLL_MAX_STEPS: a loop
    "rnn_relu_final_state": ("torch.nn.RNN(3, 16, nonlinearity='relu')", "lambda m, x: m(x)[1]", "torch.randn(9, 1, 3)"),  # short: unrolled
    "lstm_two_layers": ("torch.nn.LSTM(3, 16, num_layers=2, batch_first=True)",
                        "lambda m, x: m(x)[1][1]", "torch.randn(1, 80, 3)"),
    "gru": ("torch.nn.GRU(4, 8)", "lambda m, x: m(x)[0]", "torch.randn(66, 2, 4)"),
    "rfft_forward_norm": ("torch.nn.Identity()", "lambda m, x: torch.view_as_real(torch.fft.rfft(x, norm='forward'))",
                          "torch.randn(1, 48)"),    # not a power of two: IREE's own FFT of the scaled input
    "rfft_four_step": ("torch.nn.Identity()", "lambda m, x: torch.log(torch.fft.rfft(x, norm='ortho').abs() ** 2 + 1e-7)",
                       "torch.randn(2, 3, 512)"),
    "complex_abs": ("torch.nn.Identity()", "lambda m, x: torch.fft.rfft(x).abs()", "torch.randn(1, 64)"),
    "dropout_in_inference": ("torch.nn.Dropout1d(0.5)", "lambda m, x: m(x) * 2", "torch.randn(1, 4, 8)"),
    "attention": ("torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)",
                  "lambda m, x: m(x)", "torch.randn(1, 10, 16)"),
    # 3-tap convolutions wide enough for Winograd F(4,3); a batch of two, lengths not a multiple of 4
    "winograd_convolutions": ("torch.nn.Sequential(torch.nn.Conv1d(64, 96, 3, padding=1), torch.nn.ReLU(), "
                              "torch.nn.Conv1d(96, 64, 3))", "lambda m, x: m(x)", "torch.randn(2, 64, 50)"),
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
    "random_draws": ("torch.nn.Linear(8, 8)", "lambda m, x: m(x) + torch.randn_like(x) * torch.rand(1, 8)",
                     "torch.randn(1, 8)"),
}


def write_model(folder, name):
    layer, forward, example = CASES[name]
    source = f"""
        import torch

        class Case(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = {layer}
                self.forward_fn = {forward}

            def forward(self, x):
                return self.forward_fn(self.layer, x)

        def model():
            torch.manual_seed(0)
            return Case()

        def example_input():
            torch.manual_seed(1)
            return {example}
        """
    path = folder / name / "model.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(source))
    return path


@pytest.mark.parametrize("name", CASES)
def test_rewritten_graph_equals_pytorch(tmp_path, name):
    loaded = load_model(write_model(tmp_path, name))
    program = torch.export.export(loaded.module, (loaded.example_input,))
    rewritten, applied, noise = rewrites.apply(program, loaded.example_input)
    assert applied, "the case should need a rewrite"
    draws = rewrites.draw_noise(noise, seed=7)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = loaded.module(loaded.example_input)
        actual = rewritten.module()(loaded.example_input, *draws)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_rewritten_model_compiles_and_matches_on_iree(tmp_path, name):
    result = compile_model(write_model(tmp_path, name), TARGETS["host"], "vmfb", "llvm-cpu", tmp_path / "out")
    folder = result.artifacts[0].parent
    error = max_abs_error(run_module(folder, TARGETS["host"]), folder)
    assert error <= tolerance(np.load(folder / "expected.npy")), error


def test_random_draws_become_inputs_in_order(tmp_path):
    result = compile_model(write_model(tmp_path, "random_draws"), TARGETS["host"], "vmfb", "llvm-cpu", tmp_path / "o")
    roles = [(i["role"], i.get("distribution")) for i in result.export["inputs"]]
    assert roles == [("input", None), ("noise", "normal"), ("noise", "uniform")]


def test_convolutions_become_one_matmul_each(tmp_path):
    import torch
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
    import torch
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


def test_the_tuning_spec_reaches_code_generation(tmp_path):
    """The packed product and a recurrent step's product get the spec's config, not IREE's own."""
    import subprocess

    from service.pipeline.compile import compile_flags, export_cached
    from service.pipeline.tools import iree_compile
    from service.pipeline.tuning_spec import vector_outputs
    lanes = vector_outputs(TARGETS["host"])
    for name, config in (("one_row_linears", f"vector_common_parallel = [1, 1, {lanes}, 0]"),
                         ("lstm_two_layers", "vector_common_parallel = [1, 64, 0], vector_reduction = [0, 0, 1]")):
        export_dir, _, _ = export_cached(write_model(tmp_path, name))
        dump = tmp_path / f"{name}-dump"
        argv = [iree_compile(), str(export_dir / "model.mlirbc"), *compile_flags(TARGETS["host"], "vmfb", "llvm-cpu"),
                f"--iree-hal-dump-executable-files-to={dump}", "-o", str(tmp_path / f"{name}.vmfb")]
        subprocess.run(argv, check=True, capture_output=True)
        configured = "".join(f.read_text() for f in dump.glob("configured_*.mlir"))
        assert config in configured, name


def test_rfft_four_step_only_for_power_of_two_lengths():
    cases = {(1, 1024): True, (3, 64): True, (1, 32): False, (1, 48): False}
    for shape, four_step in cases.items():
        x = torch.randn(*shape)
        program = torch.export.export(Lambda(lambda x: torch.fft.rfft(x).abs()), (x,))
        rewritten, applied, _ = rewrites.apply(program, x)
        assert ("rfft as a four-step DFT: two small matmuls" in applied) == four_step, shape
        with torch.no_grad():
            torch.testing.assert_close(rewritten.module()(x), torch.fft.rfft(x).abs(), rtol=1e-4, atol=1e-4)


class Lambda(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)
