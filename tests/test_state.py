"""State the PyTorch way: buffers a model updates in place in forward() live on in the compiled
module from call to call (starting from their values at export), and `reset` puts them back.
Checked with the real IREE compiler and runtime against PyTorch fed the same calls."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.bench.run import tolerance
from service.errors import ExportError
from service.modelfile import load_model
from service.pipeline.compile import CompileOptions, compile_model
from service.pipeline.export import export_model
from service.pipeline.targets import get_target

# an accumulator with a leaky memory: each call's output depends on every earlier call
STATEFUL = '''import torch
from torch import nn


class Leaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(8, 8)
        self.register_buffer("memory", torch.full((1, 8), 0.25))
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x):
        memory = torch.tanh(self.mix(x) + 0.9 * self.memory)
        self.memory.copy_(memory)
        self.calls += 1
        return memory * self.calls


def model():
    torch.manual_seed(0)
    return Leaky()


example_input = torch.linspace(-1, 1, 8).reshape(1, 8)
'''


@pytest.fixture(scope="module")
def stateful_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stateful") / "model.py"
    path.write_text(STATEFUL)
    return path


def blocks(count: int, shape=(1, 8)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(shape, generator=generator) for _ in range(count)]


def test_export_records_the_state_and_adds_reset(stateful_model, tmp_path):
    info = export_model(stateful_model, tmp_path, "model.mlir")
    assert info["state"] == {"buffers": [{"name": "memory", "shape": [1, 8], "dtype": "float32"},
                                         {"name": "calls", "shape": [1], "dtype": "float32"}],
                             "reset": "reset"}
    assert json.loads((tmp_path / "export.json").read_text())["state"] == info["state"]
    text = (tmp_path / "model.mlir").read_text()
    assert text.count("util.global private mutable") == 2 and "func.func @reset()" in text
    # the reference is PyTorch's first call, from the starting state (export leaves the buffers as they were)
    expected = load_model(stateful_model).module(torch.linspace(-1, 1, 8).reshape(1, 8))
    assert np.abs(np.load(tmp_path / "expected.npy") - expected.detach().numpy()).max() == 0


def test_compiled_module_carries_state_between_calls_and_reset_restores_it(stateful_model, tmp_path):
    import iree.runtime as ireert

    compiled = compile_model(stateful_model, CompileOptions(get_target("host"), variant="default"), tmp_path)
    module = ireert.load_vm_flatbuffer_file(str(compiled.artifacts[0]), driver="local-sync")
    reference = load_model(stateful_model).module
    fresh = copy.deepcopy(reference)
    inputs = blocks(8)
    with torch.no_grad():
        expected = [reference(x).numpy() for x in inputs]
    got = [module.main(x.numpy()).to_host() for x in inputs]
    for index, (g, e) in enumerate(zip(got, expected)):
        assert np.abs(g - e).max() <= tolerance(e), f"call {index}"
    assert np.abs(got[-1] - got[0]).max() > 1.0   # the state really changed the output
    module.reset()
    with torch.no_grad():
        first = fresh(inputs[0]).numpy()
    assert np.abs(module.main(inputs[0].numpy()).to_host() - first).max() <= tolerance(first)


def test_stateless_model_exports_exactly_as_before(tmp_path):
    """No in-place op: the program is not touched, the module has no mutable global and no reset."""
    from service.pipeline import state
    import zoo

    loaded = load_model(zoo.model_path("basic_mlp"))
    program = torch.export.export(loaded.module, (loaded.example_input,))
    assert state.mutating_nodes(program) == []
    info = export_model(zoo.model_path("basic_mlp"), tmp_path, "model.mlir")
    text = (tmp_path / "model.mlir").read_text()
    assert info["state"] is None and "mutable" not in text and "@reset" not in text


def test_changing_an_input_in_place_names_the_line(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import torch\n"
                     "class M(torch.nn.Module):\n"
                     "    def forward(self, x):\n"
                     "        x.mul_(2)\n"
                     "        return x + 1\n"
                     "model = M()\n"
                     "example_input = torch.ones(1, 8)\n")
    with pytest.raises(ExportError) as error:
        export_model(model, tmp_path / "out")
    assert error.value.line == 4 and error.value.file == str(model)
    assert "changes an input in place" in error.value.message and "x.clone()" in error.value.hint
