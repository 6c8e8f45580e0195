"""The zoo: published names and sizes, reproducible weights, exports in all three formats."""
import json
from pathlib import Path

import torch

import zoo
from service.modelfile import load_model
from zoo.export_all import export_zoo

from .conftest import cli, cli_json

PUBLISHED = ["basic_mlp", "log_spectrum", "mdrnn", "resnet_1d", "simple_conv_1d", "simple_rnn",
             "single_mm", "siren_mlp", "transformer_block", "variational_encoder"]
REALTIME = ["gru_knobs", "lstm_amp", "mdrnn_control", "wavenet_amp"]   # stateful across blocks (docs/design.md, "Real-time models")


def linear(inputs: int, outputs: int, bias: bool = True) -> int:
    return inputs * outputs + (outputs if bias else 0)


def conv1d(inputs: int, outputs: int, kernel: int) -> int:
    return inputs * outputs * kernel + outputs


# docs/design.md's zoo table: each model's output shape and its parameters counted from the
# published architecture (mdrnn's head is its file's own: shape only)
TABLE = {
    "single_mm": ([1, 1024], linear(1024, 1024, bias=False)),
    "basic_mlp": ([1, 1024], 3 * linear(1024, 1024)),
    "siren_mlp": ([1024, 1], linear(1, 256) + 3 * linear(256, 256) + linear(256, 1)),
    "simple_conv_1d": ([1, 8], conv1d(1, 256, 9) + conv1d(256, 256, 9) + conv1d(256, 8, 1)),
    "resnet_1d": ([1, 8], conv1d(1, 256, 3) + 3 * 2 * conv1d(256, 256, 3) + conv1d(256, 8, 1)),
    "simple_rnn": ([1, 1, 256], linear(1, 256) + linear(256, 256)),   # Elman: W_ih, W_hh, both biases
    "log_spectrum": ([1, 513], 0),
    # Linear 8->512; encoder layer: attention in (3 x 512x512) and out projections, ff 512->512->512, two LayerNorms
    "transformer_block": ([1, 512], linear(8, 512) + linear(512, 3 * 512) + 3 * linear(512, 512) + 2 * 2 * 512),
    "variational_encoder": ([1, 128], 2 * linear(1024, 128)),
    # NAM's LSTM: LSTM(1 -> 24) (W_ih, W_hh, both biases per gate) and a Linear(24 -> 1) head
    "lstm_amp": ([1, 128], 4 * (linear(1, 24) + linear(24, 24)) + linear(24, 1)),
    # NAM's WaveNet nano: per array a rechannel, ten layers (dilated k3 conv, 1x1 condition mixer
    # without bias, 1x1 residual) and a head (bias only on the last); the first head joins the second
    "wavenet_amp": ([1, 128], linear(1, 4, bias=False) + 10 * (conv1d(4, 4, 3) + linear(1, 4, bias=False) + linear(4, 4))
                    + linear(4, 2, bias=False) + linear(4, 2, bias=False)
                    + 10 * (conv1d(2, 2, 3) + linear(1, 2, bias=False) + linear(2, 2)) + linear(2, 1)
                    + linear(2, 2, bias=False)),
    # GRU(1 + 2 knobs -> 8): three gates of W_ih, W_hh and both biases; Linear(8 -> 1)
    "gru_knobs": ([1, 128], 3 * (linear(3, 8) + linear(8, 8)) + linear(8, 1)),
    # LSTM(3 -> 64); mixture head 64 -> 5 x (weight, 2 means, 2 deviations); dt head 64 -> 1
    "mdrnn_control": ([1, 3], 4 * (linear(3, 64) + linear(64, 64)) + linear(64, 25) + linear(64, 1)),
}


def test_zoo_lists_the_published_models_with_shapes_and_sizes():
    data, _ = cli_json("zoo", "list")
    models = {m["name"]: m for m in data["models"]}
    assert sorted(models) == sorted(PUBLISHED + REALTIME)
    assert models["basic_mlp"]["parameters"] == 3 * (1024 * 1024 + 1024)
    assert models["single_mm"]["parameters"] == 1024 * 1024
    assert models["simple_conv_1d"]["output_shape"] == [1, 8]
    assert models["siren_mlp"]["output_shape"] == [1024, 1]
    assert models["log_spectrum"]["output_shape"] == [1, 513]
    assert models["simple_rnn"]["output_shape"] == [1, 1, 256]
    assert models["transformer_block"]["output_shape"] == [1, 512]
    assert models["mdrnn"]["input_shape"] == [1, 16, 3] and models["mdrnn"]["output_shape"] == [1, 25]
    assert all(models[n]["input_shape"] == [1, 1024] for n in PUBLISHED if n != "mdrnn")
    assert all(models[n]["input_shape"] == [1, 128] for n in REALTIME if n != "mdrnn_control")
    assert models["gru_knobs"]["input_shapes"] == [[1, 128], [1, 2]] and models["mdrnn_control"]["input_shape"] == [1, 3]
    published = {name: (models[name]["output_shape"], models[name]["parameters"]) for name in TABLE}
    assert published == TABLE


def test_zoo_weights_are_reproducible():
    first = load_model(zoo.model_path("resnet_1d"))
    second = load_model(zoo.model_path("resnet_1d"))
    for a, b in zip(first.module.state_dict().values(), second.module.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(first.example_input, second.example_input)


def test_zoo_export_writes_every_format(tmp_path):
    result = cli("zoo", "export", "basic_mlp", "log_spectrum", "--out", str(tmp_path), "--json", check=False)
    data = json.loads(result.stdout)
    basic = data["models"]["basic_mlp"]
    assert all("path" in basic[f] for f in ("mlir", "onnx", "torchscript")), basic
    assert "torch.aten" in (tmp_path / "basic_mlp" / "basic_mlp.mlir").read_text()[:200000]
    assert Path(basic["onnx"]["path"]).stat().st_size > 3 * 1024 * 1024 * 4  # the weights are inside
    loaded = torch.jit.load(basic["torchscript"]["path"])
    reference = load_model(zoo.model_path("basic_mlp"))
    with torch.no_grad():
        assert torch.allclose(loaded(reference.example_input), reference.module(reference.example_input), atol=1e-6)
    # the summary names each model; both export in every format (none fails)
    assert "basic_mlp" in result.stderr and "log_spectrum" in result.stderr
    assert result.returncode == 0, result.stderr
    assert sorted(data["models"]) == ["basic_mlp", "log_spectrum"]
    for name, row in data["models"].items():
        assert sorted(row) == ["mlir", "onnx", "torchscript"], (name, row)
        for outcome in row.values():
            assert "error" not in outcome and Path(outcome["path"]).is_file(), (name, outcome)


def test_python_m_zoo_is_the_same_command(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "zoo", "single_mm", "--out", str(tmp_path), "--formats", "mlir"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "single_mm" / "single_mm.mlir").exists()


def test_one_failing_model_does_not_stop_the_others(tmp_path):
    from rich.console import Console
    results = export_zoo(["no_such_model", "single_mm"], tmp_path, ["mlir"], Console(quiet=True))
    assert "error" in results["no_such_model"]["mlir"]
    assert "path" in results["single_mm"]["mlir"]
