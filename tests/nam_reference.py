"""Neural Amp Modeler's own PyTorch models (PyPI neural-amp-modeler, a test dependency), as the
reference the streaming import must match, and NAM's exporter to make test captures.

The wheel is installed with --no-deps (pyproject's `test` extra says how): `import nam` would pull
NAM's training and GUI stack, so the package's __init__ is skipped and only `nam.models` is
imported. Its module `nam.data` imports three libraries for WAV files: wavio (which the exporter
uses, to read the WAV its loudness metadata is measured on) and tqdm are test dependencies;
librosa (loading other WAV formats, never called here) is replaced by an empty module when absent.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import torch

WAV_ONLY_LIBRARIES = ("librosa", "wavio", "tqdm")


def nam_models():
    """NAM's `nam.models` package, imported without `nam/__init__.py`."""
    if "nam.models" in sys.modules:
        return sys.modules["nam.models"]
    spec = importlib.util.find_spec("nam")
    if spec is None:
        raise ImportError("neural-amp-modeler is not installed (pip install -e '.[test]' and see pyproject.toml)")
    if "nam" not in sys.modules:
        package = types.ModuleType("nam")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec          # importlib.resources finds NAM's loudness WAV through it
        sys.modules["nam"] = package
    for name in WAV_ONLY_LIBRARIES:
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.tqdm = lambda iterable=None, *a, **k: iterable
            sys.modules[name] = stub
    import nam.models
    return nam.models


def layer_array(input_size, channels, head_size, dilations, *, kernel_size=3, activation="Tanh",
                head_bias=False, condition_size=1, **extra) -> dict:
    """One WaveNet layer array config for NAM's WaveNet.init_from_config (0.13: a head object; a
    gated layer is the activation {"name": "PairMultiply", "primary": ..., "secondary": ...})."""
    return {"input_size": input_size, "condition_size": condition_size, "channels": channels,
            "head": {"out_channels": head_size, "kernel_size": 1, "bias": head_bias},
            "kernel_size": kernel_size, "dilations": list(dilations), "activation": activation, **extra}


def wavenet_config(sizes, dilations, head_scale=0.02, **layer_options) -> dict:
    """A WaveNet of layer arrays, (input, channels, head) and dilations for each."""
    return {"layers_configs": [layer_array(i, c, h, d, head_bias=(n == len(sizes) - 1), **layer_options)
                               for n, ((i, c, h), d) in enumerate(zip(sizes, dilations))],
            "head": None, "head_scale": head_scale}


STANDARD = [1 << i for i in range(10)]                    # 1 .. 512
SHORT, LONG = STANDARD[:7], STANDARD[7:] + STANDARD       # 1 .. 64; 128 .. 512 then 1 .. 512
ARCHITECTURES = {   # NAM's trainer presets (0.7 to 0.12), by name: (input, channels, head) per array
    "standard": lambda: wavenet_config([(1, 16, 8), (16, 8, 1)], [STANDARD, STANDARD]),
    "lite": lambda: wavenet_config([(1, 12, 6), (12, 6, 1)], [SHORT, LONG]),
    "feather": lambda: wavenet_config([(1, 8, 4), (8, 4, 1)], [SHORT, LONG]),
    "nano": lambda: wavenet_config([(1, 4, 2), (4, 2, 1)], [SHORT, LONG]),
}


def make_wavenet(config: dict, seed: int = 0, sample_rate: int = 48000):
    models = nam_models()
    torch.manual_seed(seed)
    from nam.models.wavenet import WaveNet
    net = WaveNet.init_from_config({**config, "sample_rate": sample_rate})
    _nudge_biases(net, seed)
    return net.eval()


def make_lstm(hidden_size=3, num_layers=1, seed=0, sample_rate=48000):
    models = nam_models()
    torch.manual_seed(seed)
    net = models.LSTM(hidden_size, num_layers=num_layers, sample_rate=sample_rate)
    with torch.no_grad():   # a learned initial state, as trained captures have
        net._initial_hidden.normal_(0, 0.3)
        net._initial_cell.normal_(0, 0.3)
    return net.eval()


def _nudge_biases(net, seed: int) -> None:
    """Non-zero biases everywhere (a fresh model's are small): the silence response then matters."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith("bias"):
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))


def export_capture(net, folder: Path, name: str) -> Path:
    """NAM's own exporter: `folder/name.nam`. Its loudness and gain metadata (the model run over a
    WAV at eleven gains: a minute per capture here, and nothing the import reads) are fixed values."""
    folder.mkdir(parents=True, exist_ok=True)
    net._metadata_loudness = lambda gain=1.0, db=True: -18.0
    net._metadata_gain = lambda: 0.5
    net.export(folder, basename=name)
    return folder / f"{name}.nam"


def reference_output(capture: Path, signal: torch.Tensor) -> torch.Tensor:
    """NAM's PyTorch model loaded from the file, run on the whole signal with its zero padding."""
    models = nam_models()
    net = models.init_from_nam(json.loads(Path(capture).read_text())).eval()
    with torch.no_grad():
        return net(signal, pad_start=True)


def as_pre_06(capture: Path, out: Path) -> Path:
    """The same capture written the way NAM 0.5 files are (flat head_size / head_bias, `gated`)."""
    data = json.loads(Path(capture).read_text())
    data["version"] = "0.5.2"
    for layer in data["config"]["layers"]:
        head = layer.pop("head")
        modes = layer.pop("gating_mode")
        layer.pop("secondary_activation")
        kernels = layer.pop("kernel_sizes")
        primary = layer["activation"][0]
        layer.update(head_size=head["out_channels"], head_bias=head["bias"], kernel_size=kernels[0],
                     activation=primary["type"] if isinstance(primary, dict) else primary,
                     gated=modes[0] == "gated")
        for key in [k for k in layer if k.endswith("film") or k in ("head1x1", "layer1x1", "bottleneck", "slimmable",
                                                                    "groups_input", "groups_input_mixin")]:
            layer.pop(key)
    data.pop("sample_rate", None)
    out.write_text(json.dumps(data))
    return out
