"""Reading a Neural Amp Modeler capture (`.nam`): the JSON's layout, validated, and its weights cut
into the tensors the streaming modules use.

A `.nam` file is JSON: `version`, `architecture`, `config`, `weights` (one flat list, in the
order NAM's modules import them), `sample_rate` (absent in old files: 48 kHz) and `metadata`.
WaveNet layer arrays come in two written forms: before 0.6 a flat `head_size` + `head_bias`
(a 1x1 head rechannel, `gated` for a tanh x sigmoid pair), later a `head` object and per-layer
activation lists with `gating_mode`. Both become the same LayerArray here. Anything this
importer cannot express (FiLM, a condition DSP, slimmable or packed layers, an unknown
architecture or activation) raises CaptureError naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelFileError

DEFAULT_SAMPLE_RATE = 48000   # NAM's own default, for files that do not say
DEFAULT_BLOCK_SIZE = 128       # frames per call when neither the project nor the command says
ARCHITECTURES = ("WaveNet", "LSTM", "Linear")
# activations by their NAM/PyTorch names; the arguments each may carry
ACTIVATIONS = {"Tanh": (), "ReLU": (), "Sigmoid": (), "SiLU": (), "Hardswish": (), "Softsign": (),
               "Softsigmoid": (), "Hardtanh": ("min_val", "max_val"), "LeakyReLU": ("negative_slope",),
               "PReLU": ("negative_slope", "negative_slopes"),
               "LeakyHardtanh": ("min_val", "max_val", "min_slope", "max_slope")}
FILM_KEYS = ("conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film",
             "activation_pre_film", "activation_post_film", "layer1x1_post_film", "head1x1_post_film")


class CaptureError(ModelFileError):
    """A capture this importer cannot read or express."""


@dataclass
class Activation:
    name: str
    arguments: dict = field(default_factory=dict)


@dataclass
class LayerActivation:
    primary: Activation
    pairing: str = "none"                 # "none", "gated" (primary x secondary) or "blended"
    secondary: Activation | None = None


@dataclass
class Conv:
    """A Conv1d's weights as NAM stores them: weight (out, in / groups, kernel), then bias."""
    weight: object                          # torch.Tensor
    bias: object | None
    dilation: int = 1
    groups: int = 1


@dataclass
class Layer:
    conv: Conv                  # channels -> mid (2 x bottleneck when paired)
    mixer: Conv                 # condition -> mid, no bias
    activation: LayerActivation
    layer1x1: Conv | None       # bottleneck -> channels (the residual branch)
    head1x1: Conv | None        # bottleneck -> head channels


@dataclass
class LayerArray:
    rechannel: Conv             # input -> channels, no bias
    layers: list[Layer]
    head_rechannel: Conv        # head channels -> head out


@dataclass
class WaveNet:
    arrays: list[LayerArray]
    head_scale: float
    head: list[Conv]            # the optional post-head: each block applies head_activation, then its conv
    head_activation: Activation | None

    @property
    def receptive_field(self) -> int:
        convs = [layer.conv for array in self.arrays for layer in array.layers] + \
                [array.head_rechannel for array in self.arrays] + self.head
        return 1 + sum((c.weight.shape[-1] - 1) * c.dilation for c in convs)


@dataclass
class LSTM:
    input_size: int
    hidden_size: int
    num_layers: int
    weight_ih: list             # per layer: (4H, in), gates i, f, g, o as PyTorch orders them
    weight_hh: list             # per layer: (4H, H)
    bias: list                  # per layer: (4H,)
    initial_hidden: object      # (layers, H)
    initial_cell: object
    head_weight: object         # (1, H)
    head_bias: object           # (1,)
    receptive_field: int = 1


@dataclass
class Linear:
    conv: Conv

    @property
    def receptive_field(self) -> int:
        return self.conv.weight.shape[-1]


@dataclass
class Capture:
    path: Path
    version: str
    architecture: str
    sample_rate: int
    network: WaveNet | LSTM | Linear
    metadata: dict

    @property
    def receptive_field(self) -> int:
        return self.network.receptive_field


def read_capture(path: Path) -> Capture:
    """The capture at `path`, parsed and validated (CaptureError names what it cannot take)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise CaptureError(f"cannot read the capture: {e}", file=str(path)) from None
    except json.JSONDecodeError as e:
        raise CaptureError(f"not a Neural Amp Modeler capture (invalid JSON: {e.msg})", file=str(path),
                           line=e.lineno) from None
    return parse_capture(data, Path(path))


def parse_capture(data: dict, path: Path) -> Capture:
    if not isinstance(data, dict) or "architecture" not in data or "weights" not in data:
        raise CaptureError("not a Neural Amp Modeler capture: it has no `architecture` and `weights`", file=str(path))
    version, architecture = str(data.get("version", "unknown")), data["architecture"]
    if architecture not in ARCHITECTURES:
        raise CaptureError(f"architecture {architecture!r} (file version {version}) is not supported",
                           file=str(path), hint=f"bela-iree imports {', '.join(ARCHITECTURES)} captures")
    weights = _Weights(data["weights"], path)
    config = data.get("config") or {}
    reader = {"WaveNet": _wavenet, "LSTM": _lstm, "Linear": _linear}[architecture]
    try:
        network = reader(config, weights)
    except (KeyError, TypeError, ValueError) as e:
        raise CaptureError(f"{architecture} capture (version {version}) has a malformed config: "
                           f"{type(e).__name__}: {e}", file=str(path)) from None
    weights.check_used(architecture, version)
    sample_rate = data.get("sample_rate") or DEFAULT_SAMPLE_RATE
    return Capture(Path(path), version, architecture, int(round(float(sample_rate))), network,
                   data.get("metadata") or {})


class _Weights:
    """The flat weight list, read front to back in NAM's import order."""

    def __init__(self, values, path: Path):
        import torch
        self.values = torch.tensor(values, dtype=torch.float32)
        self.path, self.at = path, 0

    def take(self, *shape):
        from math import prod
        n = prod(shape)
        if self.at + n > len(self.values):
            raise CaptureError(f"the capture has {len(self.values)} weights, fewer than its config needs",
                               file=str(self.path))
        taken = self.values[self.at:self.at + n].reshape(shape).clone()
        self.at += n
        return taken

    def conv(self, inputs: int, outputs: int, kernel: int, bias: bool, dilation: int = 1, groups: int = 1) -> Conv:
        if inputs % groups or outputs % groups:
            raise ValueError(f"{inputs} -> {outputs} channels cannot be split into {groups} groups")
        weight = self.take(outputs, inputs // groups, kernel)
        return Conv(weight, self.take(outputs) if bias else None, dilation, groups)

    def check_used(self, architecture: str, version: str) -> None:
        if self.at != len(self.values):
            raise CaptureError(f"{architecture} capture (version {version}) has {len(self.values)} weights, its "
                               f"config uses {self.at}", file=str(self.path),
                               hint="the file's config and weights do not belong together")


def _activation(spec) -> Activation:
    if isinstance(spec, str):
        name, arguments = spec, {}
    else:
        arguments = dict(spec)
        name = arguments.pop("type", None) or arguments.pop("name")
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported (known: {', '.join(ACTIVATIONS)})")
    unknown = set(arguments) - set(ACTIVATIONS[name])
    if unknown:
        raise ValueError(f"activation {name} with {', '.join(sorted(unknown))} is not supported")
    return Activation(name, arguments)


def _per_layer(value, count: int, what: str) -> list:
    values = value if isinstance(value, list) else [value] * count
    if len(values) != count:
        raise ValueError(f"{len(values)} {what} for {count} layers")
    return values


def _layer_activations(config: dict, count: int) -> list[LayerActivation]:
    primaries = [_activation(a) for a in _per_layer(config["activation"], count, "activations")]
    if "gating_mode" in config:   # 0.7 on: a mode and a secondary activation per layer
        modes = _per_layer(config["gating_mode"], count, "gating modes")
        secondaries = _per_layer(config.get("secondary_activation"), count, "secondary activations")
        return [LayerActivation(p, m, _activation(s) if m != "none" else None)
                for p, m, s in zip(primaries, modes, secondaries)]
    if config.get("gated"):       # earlier: a tanh-like primary times a sigmoid gate
        return [LayerActivation(p, "gated", Activation("Sigmoid")) for p in primaries]
    return [LayerActivation(p) for p in primaries]


def _refuse_unexpressible(config: dict, index: int) -> None:
    where = f"layer array {index}"
    for key in FILM_KEYS:
        if (config.get(key) or {}).get("active"):
            raise ValueError(f"{where} uses FiLM ({key}), which bela-iree cannot import yet")
    if config.get("slimmable"):
        raise ValueError(f"{where} is slimmable ({config['slimmable'].get('method')}), which bela-iree cannot import")
    if config.get("packing"):
        raise ValueError(f"{where} uses packed convolutions, which bela-iree cannot import")
    for mode in _per_layer(config.get("gating_mode", "none"), len(config["dilations"]), "gating modes"):
        if mode not in ("none", "gated", "blended"):
            raise ValueError(f"{where}: gating mode {mode!r} is not supported")


def _layer_array(config: dict, weights: _Weights, index: int) -> LayerArray:
    _refuse_unexpressible(config, index)
    dilations = config["dilations"]
    channels, condition = config["channels"], config["condition_size"]
    count = len(dilations)
    kernels = _per_layer(config.get("kernel_sizes", config.get("kernel_size")), count, "kernel sizes")
    activations = _layer_activations(config, count)
    bottleneck = config.get("bottleneck", channels)
    if "head" in config and isinstance(config["head"], dict):    # 0.6 on
        head = config["head"]
        head_out, head_kernel, head_bias = head["out_channels"], head["kernel_size"], head["bias"]
    else:                                                         # before 0.6: flat head_size / head_bias
        head_out, head_kernel, head_bias = config["head_size"], 1, config["head_bias"]
    layer1x1 = config.get("layer1x1") or config.get("layer_1x1_config") or {"active": True, "groups": 1}
    head1x1 = config.get("head1x1") or config.get("head_1x1_config") or {"active": False}
    groups_input, groups_mixin = config.get("groups_input", 1), config.get("groups_input_mixin", 1)

    rechannel = weights.conv(config["input_size"], channels, 1, bias=False)
    layers = []
    for kernel, dilation, activation in zip(kernels, dilations, activations):
        mid = 2 * bottleneck if activation.pairing != "none" else bottleneck
        conv = weights.conv(channels, mid, kernel, bias=True, dilation=dilation, groups=groups_input)
        mixer = weights.conv(condition, mid, 1, bias=False, groups=groups_mixin)
        residual = weights.conv(bottleneck, channels, 1, True, groups=layer1x1.get("groups", 1)) \
            if layer1x1.get("active", True) else None
        to_head = weights.conv(bottleneck, head1x1["out_channels"], 1, True, groups=head1x1.get("groups", 1)) \
            if head1x1.get("active") else None
        if residual is None and bottleneck != channels:
            raise ValueError(f"layer array {index}: no layer 1x1 with bottleneck {bottleneck} != channels {channels}")
        layers.append(Layer(conv, mixer, activation, residual, to_head))
    head_in = head1x1["out_channels"] if head1x1.get("active") else bottleneck
    head_rechannel = weights.conv(head_in, head_out, head_kernel, bias=head_bias)
    return LayerArray(rechannel, layers, head_rechannel)


def _wavenet(config: dict, weights: _Weights) -> WaveNet:
    if config.get("condition_dsp"):
        raise ValueError("a condition DSP (a WaveNet feeding the condition) is not supported")
    arrays = [_layer_array(c, weights, i) for i, c in enumerate(config["layers"])]
    for first, second in zip(arrays, arrays[1:]):
        if first.head_rechannel.weight.shape[0] != second.head_rechannel.weight.shape[1] and \
                second.layers[0].head1x1 is None:
            raise ValueError("the head channels of consecutive layer arrays do not match")
    head, head_activation = [], None
    if config.get("head"):
        spec = config["head"]
        head_activation = _activation(spec["activation"])
        inputs = arrays[-1].head_rechannel.weight.shape[0]
        kernels = spec["kernel_sizes"]
        for i, kernel in enumerate(kernels):
            outputs = spec["out_channels"] if i == len(kernels) - 1 else spec["channels"]
            head.append(weights.conv(inputs, outputs, kernel, bias=True))
            inputs = outputs
    head_scale = float(weights.take(1)[0])   # the last weight; NAM prefers it to the config's copy
    out = head[-1].weight.shape[0] if head else arrays[-1].head_rechannel.weight.shape[0]
    if out != 1:
        raise ValueError(f"the capture has {out} output channels; bela-iree imports mono captures")
    return WaveNet(arrays, head_scale, head, head_activation)


def _lstm(config: dict, weights: _Weights) -> LSTM:
    inputs, hidden, layers = config.get("input_size", 1), config["hidden_size"], config.get("num_layers", 1)
    if inputs != 1:
        raise ValueError(f"an LSTM with {inputs} inputs (parametric) is not supported")
    w_ih, w_hh, bias, h0, c0 = [], [], [], [], []
    for layer in range(layers):
        width = inputs if layer == 0 else hidden
        w = weights.take(4 * hidden, width + hidden)    # [input | hidden] columns, gates i f g o
        w_ih.append(w[:, :width].contiguous())
        w_hh.append(w[:, width:].contiguous())
        bias.append(weights.take(4 * hidden))
        h0.append(weights.take(hidden))
        c0.append(weights.take(hidden))
    import torch
    return LSTM(inputs, hidden, layers, w_ih, w_hh, bias, torch.stack(h0), torch.stack(c0),
                weights.take(1, hidden), weights.take(1))


def _linear(config: dict, weights: _Weights) -> Linear:
    return Linear(weights.conv(1, 1, config["receptive_field"], bias=bool(config.get("bias", False))))
