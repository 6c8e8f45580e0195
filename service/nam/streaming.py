"""A capture as a streaming PyTorch module in the project's buffer idiom: state lives in
registered buffers, updated in place in forward(), so a block computes only its new samples.

WaveNet: each dilated convolution keeps the last (kernel - 1) x dilation samples of its input.
A layer's convolution is one contraction over its stacked taps (im2col by hand: IREE's matmul
kernels beat its direct convolution); the one-channel condition mix is a broadcast product. The starting
state is each layer's response to silence (NAM pads the signal's start with zeros and the
biases make that silence non-zero inside): the histories are filled by running the module over
a receptive field of zeros when it is built, and the compiled module starts (and resets) there.
LSTM: nn.LSTM stepped over the block with its hidden and cell state in buffers, starting at the
capture's learned initial state.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import capture as nam

WARM_UP_CHUNK = 8192     # samples of silence per warm-up call (any length gives the same state)


def activation_function(activation: nam.Activation, channels: int):
    """A function of a (T, channels) tensor computing NAM's activation."""
    a = activation.arguments
    name = activation.name
    if name == "Tanh":
        return torch.tanh
    if name == "Sigmoid":
        return torch.sigmoid
    if name == "ReLU":
        return torch.relu
    if name == "SiLU":
        return F.silu
    if name == "Hardswish":
        return F.hardswish
    if name == "Softsign":
        return lambda x: x / (1.0 + x.abs())
    if name == "Softsigmoid":
        return lambda x: 0.5 * (1.0 + x / (1.0 + x.abs()))
    if name == "Hardtanh":
        low, high = a.get("min_val", -1.0), a.get("max_val", 1.0)
        return lambda x: x.clamp(low, high)
    if name == "LeakyReLU":
        slope = a.get("negative_slope", 0.01)
        return lambda x: F.leaky_relu(x, slope)
    if name == "PReLU":
        slopes = torch.tensor(a.get("negative_slopes", [a.get("negative_slope", 0.25)]), dtype=torch.float32)
        slopes = slopes.reshape(1, -1)
        return lambda x: torch.where(x >= 0, x, slopes * x)
    if name == "LeakyHardtanh":
        low, high = a.get("min_val", -1.0), a.get("max_val", 1.0)
        low_slope, high_slope = a.get("min_slope", 0.01), a.get("max_slope", 0.01)
        return lambda x: torch.where(x < low, (x - low) * low_slope + low,
                                     torch.where(x > high, (x - high) * high_slope + high, x))
    raise ValueError(f"activation {name}")


def dense_weight(conv: nam.Conv) -> torch.Tensor:
    """(out, in, kernel): a grouped convolution's weight as a block-diagonal dense one."""
    weight, groups = conv.weight, conv.groups
    if groups == 1:
        return weight
    out, per_group, kernel = weight.shape
    dense = torch.zeros(out, per_group * groups, kernel)
    step = out // groups
    for g in range(groups):
        dense[g * step:(g + 1) * step, g * per_group:(g + 1) * per_group] = weight[g * step:(g + 1) * step]
    return dense


def _constant(module: nn.Module, name: str, value: torch.Tensor) -> None:
    module.register_parameter(name, nn.Parameter(value.contiguous().clone(), requires_grad=False))


def _pointwise(module: nn.Module, name: str, conv: nam.Conv | None) -> bool:
    """A 1x1 convolution as `name`_weight (in, out) and `name`_bias (1, out; zeros if it has none)."""
    if conv is None:
        return False
    weight = dense_weight(conv)[:, :, 0]
    _constant(module, f"{name}_weight", weight.t())
    _constant(module, f"{name}_bias", conv.bias.reshape(1, -1) if conv.bias is not None
              else torch.zeros(1, weight.shape[0]))
    return True


def _taps(weight: torch.Tensor) -> torch.Tensor:
    """(kernel, in, out): one (in, out) matrix per tap, oldest first."""
    return weight.permute(2, 1, 0)


# Tensors inside are time-major, (T, channels): a history and a block then join along their
# rows, and every tap is a contiguous run of rows, so IREE moves them with plain copies
# instead of strided copy dispatches (a Cortex-A8 call of a standard capture: 4.25 M
# instructions channel-major, 3.1 M time-major).

class CausalConv(nn.Module):
    """A causal convolution (any kernel, dilation) with its input history in a buffer."""

    def __init__(self, conv: nam.Conv):
        super().__init__()
        weight = dense_weight(conv)
        self.kernel, self.dilation = weight.shape[-1], conv.dilation
        _constant(self, "weight", _taps(weight))
        _constant(self, "bias", conv.bias.reshape(1, -1) if conv.bias is not None else torch.zeros(1, weight.shape[0]))
        self.register_buffer("past", torch.zeros((self.kernel - 1) * self.dilation, weight.shape[1]))

    def forward(self, x):                    # (T, in) -> (T, out)
        frames = x.shape[0]
        if self.kernel == 1:
            return x @ self.weight[0] + self.bias
        full = torch.cat([self.past, x])
        self.past.copy_(full[full.shape[0] - self.past.shape[0]:])
        taps = torch.stack([full[j * self.dilation:j * self.dilation + frames] for j in range(self.kernel)])
        return torch.einsum("jti,jio->to", taps, self.weight) + self.bias


class WaveNetLayer(nn.Module):
    def __init__(self, layer: nam.Layer):
        super().__init__()
        conv = dense_weight(layer.conv)
        self.kernel, self.dilation = conv.shape[-1], layer.conv.dilation
        _constant(self, "weight", _taps(conv))                                   # (k, C, mid)
        _constant(self, "mixer", dense_weight(layer.mixer)[:, :, 0].t())         # (cond, mid)
        _constant(self, "bias", layer.conv.bias.reshape(1, -1))
        self.register_buffer("past", torch.zeros((self.kernel - 1) * self.dilation, conv.shape[1]))
        self.pairing = layer.activation.pairing
        mid = conv.shape[0]
        half = mid // 2 if self.pairing != "none" else mid
        self.primary = activation_function(layer.activation.primary, half)
        self.secondary = activation_function(layer.activation.secondary, half) if layer.activation.secondary else None
        self.residual = _pointwise(self, "residual", layer.layer1x1)
        self.to_head = _pointwise(self, "to_head", layer.head1x1)

    def forward(self, x, condition):        # (T, C), (T, cond) -> next x, head term
        frames = x.shape[0]
        # the condition mix: a broadcast product for NAM's usual one-channel condition
        z = self.bias + (condition * self.mixer if self.mixer.shape[0] == 1 else condition @ self.mixer)
        if self.kernel > 1:
            full = torch.cat([self.past, x])
            self.past.copy_(full[full.shape[0] - self.past.shape[0]:])
            taps = torch.stack([full[j * self.dilation:j * self.dilation + frames] for j in range(self.kernel)])
            z = z + torch.einsum("jtc,jcm->tm", taps, self.weight)
        else:
            z = z + x @ self.weight[0]
        if self.pairing == "none":
            post = self.primary(z)
        else:
            half = z.shape[1] // 2
            first, second = z[:, :half], z[:, half:]
            gate = self.secondary(second)
            post = self.primary(first) * gate if self.pairing == "gated" else \
                gate * self.primary(first) + (1.0 - gate) * first
        head = post @ self.to_head_weight + self.to_head_bias if self.to_head else post
        if self.residual:
            x = x + post @ self.residual_weight + self.residual_bias
        return x, head


class WaveNetArray(nn.Module):
    def __init__(self, array: nam.LayerArray):
        super().__init__()
        _constant(self, "rechannel", dense_weight(array.rechannel)[:, :, 0].t())   # (in, C)
        self.layers = nn.ModuleList(WaveNetLayer(layer) for layer in array.layers)
        self.head_rechannel = CausalConv(array.head_rechannel)

    def forward(self, x, condition, head):
        x = x * self.rechannel if self.rechannel.shape[0] == 1 else x @ self.rechannel
        for layer in self.layers:
            x, term = layer(x, condition)
            head = term if head is None else head + term
        return x, self.head_rechannel(head)


class StreamingWaveNet(nn.Module):
    """NAM's WaveNet, a block (1, T) in, a block (1, T) out, histories carried in buffers."""

    def __init__(self, net: nam.WaveNet):
        super().__init__()
        self.arrays = nn.ModuleList(WaveNetArray(a) for a in net.arrays)
        self.head_scale = net.head_scale
        self.head = nn.ModuleList(CausalConv(c) for c in net.head)
        self.head_activation = activation_function(net.head_activation, 0) if net.head_activation else None

    def forward(self, block):
        condition = block.t()                # (T, 1)
        x, head = condition, None
        for array in self.arrays:
            x, head = array(x, condition, head)
        y = self.head_scale * head
        for conv in self.head:
            y = conv(self.head_activation(y))
        return y.t()


class StreamingLSTM(nn.Module):
    """NAM's LSTM: hidden and cell state in buffers, starting at the capture's learned state."""

    def __init__(self, net: nam.LSTM):
        super().__init__()
        self.lstm = nn.LSTM(net.input_size, net.hidden_size, net.num_layers, batch_first=True)
        for layer in range(net.num_layers):
            getattr(self.lstm, f"weight_ih_l{layer}").data.copy_(net.weight_ih[layer])
            getattr(self.lstm, f"weight_hh_l{layer}").data.copy_(net.weight_hh[layer])
            getattr(self.lstm, f"bias_ih_l{layer}").data.copy_(net.bias[layer])
            getattr(self.lstm, f"bias_hh_l{layer}").data.zero_()
        self.head = nn.Linear(net.hidden_size, 1)
        self.head.weight.data.copy_(net.head_weight)
        self.head.bias.data.copy_(net.head_bias)
        self.register_buffer("h", net.initial_hidden.unsqueeze(1).clone())   # (layers, 1, H)
        self.register_buffer("c", net.initial_cell.unsqueeze(1).clone())
        self.requires_grad_(False)

    def forward(self, block):                        # (1, T)
        out, (h, c) = self.lstm(block.unsqueeze(-1), (self.h, self.c))
        self.h.copy_(h)
        self.c.copy_(c)
        return self.head(out).squeeze(-1)


class StreamingLinear(nn.Module):
    def __init__(self, net: nam.Linear):
        super().__init__()
        self.conv = CausalConv(net.conv)

    def forward(self, block):
        return self.conv(block.t()).t()


class CaptureModule(nn.Module):
    """The streaming network behind the project's interface: (1, T) in, (1, T) out."""

    def __init__(self, capture: nam.Capture):
        super().__init__()
        kind = {nam.WaveNet: StreamingWaveNet, nam.LSTM: StreamingLSTM, nam.Linear: StreamingLinear}
        self.net = kind[type(capture.network)](capture.network)
        self.receptive_field = capture.receptive_field
        self.settle()

    @torch.no_grad()
    def settle(self) -> None:
        """Fill every history with the layers' response to silence (NAM's zero padding)."""
        if isinstance(self.net, StreamingLSTM):
            return                       # its start is the capture's learned state
        remaining = self.receptive_field - 1
        while remaining > 0:
            chunk = min(remaining, WARM_UP_CHUNK)
            self.net(torch.zeros(1, chunk))
            remaining -= chunk

    def forward(self, block):
        return self.net(block)
