"""A capture as a streaming PyTorch module in the project's buffer idiom: state lives in
registered buffers, updated in place in forward(), so a block computes only its new samples.

WaveNet: each dilated convolution keeps the last (kernel - 1) x dilation samples of its input.
A layer's convolution and its condition mixer are one matmul over the stacked taps and the
condition (im2col by hand: IREE's matmul kernels beat its direct convolution). The starting
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
    """A function of a (channels, T) tensor computing NAM's activation."""
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
        slopes = slopes.reshape(-1, 1).expand(channels, 1).contiguous() if slopes.numel() == 1 else slopes.reshape(-1, 1)
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


def pointwise(conv: nam.Conv) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A 1x1 convolution as (matrix, bias column)."""
    return dense_weight(conv)[:, :, 0].contiguous(), None if conv.bias is None else conv.bias.reshape(-1, 1).clone()


def taps_matrix(conv: nam.Conv) -> torch.Tensor:
    """(out, kernel x in): the weight that multiplies the taps stacked oldest first."""
    weight = dense_weight(conv)
    return weight.permute(0, 2, 1).reshape(weight.shape[0], -1).contiguous()


class CausalConv(nn.Module):
    """A causal convolution (any kernel, dilation) with its input history in a buffer."""

    def __init__(self, conv: nam.Conv):
        super().__init__()
        weight = dense_weight(conv)
        self.kernel, self.dilation = weight.shape[-1], conv.dilation
        self.weight = nn.Parameter(taps_matrix(conv), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.reshape(-1, 1).clone(), requires_grad=False)
        self.register_buffer("past", torch.zeros(weight.shape[1], (self.kernel - 1) * self.dilation))

    def forward(self, x):                    # (in, T) -> (out, T)
        frames = x.shape[-1]
        if self.kernel == 1:
            y = self.weight @ x
        else:
            full = torch.cat([self.past, x], dim=1)
            taps = torch.cat([full[:, j * self.dilation:j * self.dilation + frames] for j in range(self.kernel)])
            self.past.copy_(full[:, full.shape[1] - self.past.shape[1]:])
            y = self.weight @ taps
        return y if self.bias is None else y + self.bias


class WaveNetLayer(nn.Module):
    def __init__(self, layer: nam.Layer):
        super().__init__()
        conv = layer.conv
        self.kernel, self.dilation = conv.weight.shape[-1], conv.dilation
        channels = dense_weight(conv).shape[1]
        # one matmul: [taps oldest first; condition] -> mid
        mixer, _ = pointwise(layer.mixer)
        self.weight = nn.Parameter(torch.cat([taps_matrix(conv), mixer], dim=1), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.reshape(-1, 1).clone(), requires_grad=False)
        self.register_buffer("past", torch.zeros(channels, (self.kernel - 1) * self.dilation))
        self.pairing = layer.activation.pairing
        mid = conv.weight.shape[0]
        half = mid // 2 if self.pairing != "none" else mid
        self.primary = activation_function(layer.activation.primary, half)
        self.secondary = activation_function(layer.activation.secondary, half) if layer.activation.secondary else None
        self.residual = _pointwise_parameters(self, "residual", layer.layer1x1)
        self.to_head = _pointwise_parameters(self, "to_head", layer.head1x1)

    def forward(self, x, condition):        # (C, T), (cond, T) -> next x, head term
        frames = x.shape[-1]
        if self.kernel > 1:
            full = torch.cat([self.past, x], dim=1)
            taps = [full[:, j * self.dilation:j * self.dilation + frames] for j in range(self.kernel)]
            self.past.copy_(full[:, full.shape[1] - self.past.shape[1]:])
        else:
            taps = [x]
        z = torch.addmm(self.bias, self.weight, torch.cat([*taps, condition]))
        if self.pairing == "none":
            post = self.primary(z)
        else:
            half = z.shape[0] // 2
            first, second = z[:half], z[half:]
            gate = self.secondary(second)
            post = self.primary(first) * gate if self.pairing == "gated" else \
                gate * self.primary(first) + (1.0 - gate) * first
        head = post if self.to_head is None else torch.addmm(self.to_head_bias, self.to_head_weight, post)
        if self.residual is not None:
            x = x + torch.addmm(self.residual_bias, self.residual_weight, post)
        return x, head


def _pointwise_parameters(module: nn.Module, name: str, conv: nam.Conv | None):
    """Registers `name`_weight / `name`_bias for a 1x1 convolution (zero bias if it has none)."""
    if conv is None:
        return None
    matrix, bias = pointwise(conv)
    setattr(module, f"{name}_weight", nn.Parameter(matrix, requires_grad=False))
    setattr(module, f"{name}_bias", nn.Parameter(bias if bias is not None else torch.zeros(matrix.shape[0], 1),
                                                 requires_grad=False))
    return True


class WaveNetArray(nn.Module):
    def __init__(self, array: nam.LayerArray):
        super().__init__()
        self.rechannel_weight = nn.Parameter(pointwise(array.rechannel)[0], requires_grad=False)
        self.layers = nn.ModuleList(WaveNetLayer(layer) for layer in array.layers)
        self.head_rechannel = CausalConv(array.head_rechannel)

    def forward(self, x, condition, head):
        x = self.rechannel_weight @ x
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
        condition = block
        x, head = block, None
        for array in self.arrays:
            x, head = array(x, condition, head)
        y = self.head_scale * head
        for conv in self.head:
            y = conv(self.head_activation(y))
        return y


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
        return self.conv(block)


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
