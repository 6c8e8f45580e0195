"""simple.py: dropout and attention in inference, random draws as inputs, exact."""

from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.targets import TARGETS

from .cases import case_tests, write_model

CASES = {
    "dropout_in_inference": ("torch.nn.Dropout1d(0.5)", "lambda m, x: m(x) * 2", "torch.randn(1, 4, 8)"),
    "attention": ("torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)",
                  "lambda m, x: m(x)", "torch.randn(1, 10, 16)"),
    "random_draws": ("torch.nn.Linear(8, 8)", "lambda m, x: m(x) + torch.randn_like(x) * torch.rand(1, 8)",
                     "torch.randn(1, 8)"),
}


test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)


def test_random_draws_become_inputs_in_order(tmp_path):
    model_file = write_model(tmp_path, "random_draws", CASES["random_draws"])
    result = compile_model(model_file, CompileOptions(TARGETS["host"]), tmp_path / "o")
    roles = [(i["role"], i.get("distribution")) for i in result.export["inputs"]]
    assert roles == [("input", None), ("noise", "normal"), ("noise", "uniform")]
