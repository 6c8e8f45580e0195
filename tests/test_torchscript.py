"""TorchScript models: the pybela tutorial's TCN saved as model.jit (scripted, and traced)
compiles and matches the script; a script the converter cannot take names its construct.

The TCN is rebuilt here the way the tutorial (pybela-pytorch-xc-tutorial) defines it: causal
dilated Conv1d blocks with residuals, a ConvTranspose1d upsampling, a 1x1 output layer, on
[batch, 512, 2] windows of two potentiometers; scripted and saved as model.jit.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from service.bench.run import run_module
from service.pipeline.targets import TARGETS

from .conftest import cli, cli_json

WINDOW, FEATURES = 512, 2


class Chomp1d(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x):
        return x[:, :, :-self.size].contiguous()


class TemporalBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, kernel: int, dilation: int):
        super().__init__()
        padding = (kernel - 1) * dilation
        self.net = nn.Sequential(
            nn.Conv1d(inputs, outputs, kernel, padding=padding, dilation=dilation), Chomp1d(padding), nn.ReLU(),
            nn.Dropout(0.2),
            nn.Conv1d(outputs, outputs, kernel, padding=padding, dilation=dilation), Chomp1d(padding), nn.ReLU(),
            nn.Dropout(0.2))
        self.downsample = nn.Conv1d(inputs, outputs, 1) if inputs != outputs else None
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.net(x)
        res = x if self.downsample is None else self.downsample(x)   # TorchScript: an Optional module
        return self.relu(out + res)


class TemporalConvNet(nn.Module):
    def __init__(self, inputs=FEATURES, channels=(16, 32, 16), kernel=3, upsample=1):
        super().__init__()
        self.network = nn.Sequential(*[TemporalBlock(inputs if i == 0 else channels[i - 1], c, kernel, 2 ** i)
                                       for i, c in enumerate(channels)])
        self.upsample_layer = nn.ConvTranspose1d(channels[-1], channels[-1], upsample, stride=upsample)
        self.output_layer = nn.Conv1d(channels[-1], inputs, 1)

    def forward(self, x):   # [batch, time, features] in and out
        y = self.network(x.transpose(1, 2))
        return self.output_layer(self.upsample_layer(y)).transpose(1, 2)


def tcn() -> nn.Module:
    torch.manual_seed(7)
    return TemporalConvNet().eval()


def matches_the_script(folder: Path, script_file: Path) -> float:
    """Run the compiled module on sensor-like input (not example_input's zeros) against the script."""
    x = (torch.rand(1, WINDOW, FEATURES) * 3).float()
    np.savez(folder / "inputs.npz", x.numpy())
    output = run_module(folder, TARGETS["host"])
    with torch.no_grad():
        wanted = torch.jit.load(str(script_file))(x).numpy()
    return float(np.abs(output.reshape(wanted.shape) - wanted).max())


def test_tutorial_tcn_jit_compiles_and_matches_the_script(tmp_path):
    script_file = tmp_path / "model.jit"
    torch.jit.script(tcn()).save(str(script_file))
    (tmp_path / "model.json").write_text(json.dumps({"input_shape": [1, WINDOW, FEATURES], "block_size": WINDOW}))
    result, _ = cli_json("compile", str(script_file), "--target", "host", "--no-tune", "--out", str(tmp_path / "out"))
    assert result["model"] == "model" and result["inputs"][0]["shape"] == [1, WINDOW, FEATURES]
    folder = Path(result["artifacts"][0]).parent
    export = json.loads((folder / "export.json").read_text())
    assert export["block_size"] == WINDOW
    assert export["parameters"] == sum(p.numel() for p in tcn().parameters())   # counted before conversion
    assert [r["path"] for r in export["reads"]] == ["model.jit"]   # the script is part of the model
    assert matches_the_script(folder, script_file) <= 1e-4


def test_traced_tcn_becomes_a_project_that_loads_it(tmp_path):
    traced = tmp_path / "tcn.jit"
    torch.jit.trace(tcn(), torch.rand(1, WINDOW, FEATURES)).save(str(traced))
    project = tmp_path / "tcn"
    result, _ = cli_json("new", str(project), "--model", str(traced), "--input-shape", f"1,{WINDOW},{FEATURES}",
                         "--target", "host")
    assert (project / "tcn.jit").read_bytes() == traced.read_bytes()
    model_py = (project / "model.py").read_text()
    assert 'torch.jit.load(HERE / "tcn.jit"' in model_py and "--input-shape" in model_py
    assert matches_the_script(Path(result["artifacts"][0]).parent, traced) <= 1e-4


@pytest.mark.parametrize("forward,construct,scripted", [
    ("        while bool(x.abs().max() < 10.0):\n            x = x * 2\n        return x\n",
     "prim::Loop (a loop whose trip count", "while bool(x.abs().max() < 10.0):"),
    ("        if bool(x.sum() > 0):\n            return x * 2\n        return x - 1\n",
     "branches on a tensor's value (prim::If", "if bool(x.sum() > 0):"),
])
def test_script_the_converter_cannot_take_names_the_construct_and_where(tmp_path, forward, construct, scripted):
    (tmp_path / "model.py").write_text(
        "import torch\n"
        "\n"
        "class Doubler(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        f"{forward}"
        "\n"
        "model = torch.jit.script(Doubler())\n"
        "example_input = torch.rand(1, 64) + 0.5\n")
    result, _ = cli_json("compile", str(tmp_path / "model.py"), "--target", "host", "--no-tune", check=False)
    error = result["error"]
    assert error["stage"] == "export" and construct in error["message"], error
    assert f"(scripted at {tmp_path / 'model.py'}:5: `{scripted}`)" in error["message"], error
    assert Path(error["file"]).name == "model.py" and error["line"] == 7 + forward.count("\n") - 1
    assert "Exporting a ScriptModule is not supported" not in json.dumps(result)


def test_torchscript_file_needs_an_input_shape_and_a_checkpoint_is_not_one(tmp_path):
    script_file = tmp_path / "bare.jit"
    torch.jit.script(tcn()).save(str(script_file))
    result, _ = cli_json("compile", str(script_file), "--target", "host", check=False)
    assert result["error"]["stage"] == "usage" and "shape" in result["error"]["message"]
    assert "--input-shape" in result["error"]["hint"] and "bare.json" in result["error"]["hint"]
    checkpoint = tmp_path / "weights.pt"
    torch.save(tcn().state_dict(), checkpoint)
    result, _ = cli_json("bench", str(checkpoint), "--target", "host", "--input-shape", "1,512,2", check=False)
    assert "holds no TorchScript module" in result["error"]["message"]
    assert cli("new", str(tmp_path / "p"), "--model", str(checkpoint), check=False).returncode == 1
