"""wavenet_amp: a causal dilated convolution stack in the style of Neural Amp Modeler's WaveNet "nano".

Input (1, 128): one block of audio; output (1, 128). Two layer arrays, of 4 then 2 channels; each
has ten layers with kernel 3 and dilations 1, 2, 4 ... 512. A layer adds its dilated convolution of
the array's signal to a 1x1 mix of the input audio (the condition), applies tanh, feeds that to the
array's head sum and, through a 1x1 convolution, back into the signal (residual). Each array's head
sum is mixed down (4 -> 2, then 2 -> 1 channels) and the second array's is the output.

Every dilated convolution is causal and cached: a registered buffer keeps the last (3 - 1) x
dilation samples of its input, which the next block's convolution reads before its own samples,
so block after block the model computes exactly what it would on the whole signal at once.
"""
import torch
from torch import nn

KERNEL = 3
DILATIONS = [2 ** i for i in range(10)]   # 1 .. 512
ARRAYS = [(1, 4, 2), (4, 2, 1)]           # (input channels, channels, head channels)
BLOCK_SIZE = 128
SAMPLE_RATE = 44100


class CachedDilatedConv(nn.Module):
    """A causal Conv1d that carries its input's last (kernel - 1) x dilation samples across calls."""

    def __init__(self, channels, dilation):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, KERNEL, dilation=dilation)
        self.register_buffer("past", torch.zeros(1, channels, (KERNEL - 1) * dilation))

    def forward(self, x):
        full = torch.cat([self.past, x], dim=-1)
        self.past.copy_(full[..., full.shape[-1] - self.past.shape[-1]:])
        return self.conv(full)


class Layer(nn.Module):
    def __init__(self, channels, dilation):
        super().__init__()
        self.dilated = CachedDilatedConv(channels, dilation)
        self.mixer = nn.Conv1d(1, channels, 1, bias=False)   # the condition: the input audio
        self.residual = nn.Conv1d(channels, channels, 1)

    def forward(self, x, condition):
        post = torch.tanh(self.dilated(x) + self.mixer(condition))
        return x + self.residual(post), post


class LayerArray(nn.Module):
    def __init__(self, inputs, channels, head):
        super().__init__()
        self.rechannel = nn.Conv1d(inputs, channels, 1, bias=False)
        self.layers = nn.ModuleList(Layer(channels, d) for d in DILATIONS)
        self.head = nn.Conv1d(channels, head, 1, bias=head == 1)

    def forward(self, x, condition, head_in):
        x = self.rechannel(x)
        head = head_in
        for layer in self.layers:
            x, post = layer(x, condition)
            head = post if head is None else head + post
        return x, self.head(head)


class WaveNetAmp(nn.Module):
    def __init__(self):
        super().__init__()
        self.arrays = nn.ModuleList(LayerArray(*sizes) for sizes in ARRAYS)
        self.first_head_to_second = nn.Conv1d(2, 2, 1, bias=False)   # the first head joins the second sum

    def forward(self, block):
        condition = block.unsqueeze(1)              # (1, 1, T)
        x, head = self.arrays[0](condition, condition, None)
        _, out = self.arrays[1](x, condition, self.first_head_to_second(head))
        return out.squeeze(1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return WaveNetAmp()


def example_input():
    """A 220 Hz sine at half scale, the first block of a guitar-like test signal."""
    t = torch.arange(BLOCK_SIZE, dtype=torch.float32) / SAMPLE_RATE
    return (0.5 * torch.sin(2 * torch.pi * 220.0 * t)).unsqueeze(0)
