"""What every family's tests share: a case written as a model file, and the two checks every
case gets (the rewritten graph equals PyTorch in PyTorch, and after IREE).

A case is (the layer, a forward taking the layer and the input, the example input), as source."""
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from service.bench.run import max_abs_error, run_module, tolerance
from service.modelfile import load_model
from service.pipeline import rewrites
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.targets import TARGETS


def write_model(folder: Path, name: str, case: tuple[str, str, str]) -> Path:
    layer, forward, example = case
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


def assert_rewritten_graph_equals_pytorch(model_file: Path) -> None:
    loaded = load_model(model_file)
    program = torch.export.export(loaded.module, (loaded.example_input,))
    rewritten, applied, noise = rewrites.apply(program, loaded.example_input)
    assert applied, "the case should need a rewrite"
    draws = rewrites.draw_noise(noise, seed=7)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = loaded.module(loaded.example_input)
        actual = rewritten.module()(loaded.example_input, *draws)
    if expected.is_complex():   # returned as real pairs
        expected = torch.view_as_real(expected.resolve_conj())
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def assert_compiles_and_matches_on_iree(model_file: Path, out: Path) -> None:
    result = compile_model(model_file, CompileOptions(TARGETS["host"]), out)
    folder = result.folder
    error = max_abs_error(run_module(folder, TARGETS["host"]), folder)
    assert error <= tolerance(np.load(folder / "expected.npy")), error


def case_tests(cases: dict):
    """The two tests every family runs on each of its cases, for its test module to take as its own."""
    @pytest.mark.parametrize("name", cases)
    def test_rewritten_graph_equals_pytorch(tmp_path, name):
        assert_rewritten_graph_equals_pytorch(write_model(tmp_path, name, cases[name]))

    @pytest.mark.parametrize("name", cases)
    def test_rewritten_model_compiles_and_matches_on_iree(tmp_path, name):
        assert_compiles_and_matches_on_iree(write_model(tmp_path, name, cases[name]), tmp_path / "out")
    return test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree
