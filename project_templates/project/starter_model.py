"""A small starter model: a learnable waveshaper applied to every sample of the block.

It takes a block of any length (the shape comes from the input, not from BLOCK_SIZE), so
bela-iree can export it at the block bela-iree.toml names: Bela's period, for no added latency.
Edit freely. bela-iree needs `model` (an nn.Module, or a function returning one) and
`example_input` (a tensor, or a function returning one); BLOCK_SIZE and SAMPLE_RATE are optional.
"""
import torch
from torch import nn

BLOCK_SIZE = 16   # Bela's default period; bela-iree.toml's `block` overrides it
SAMPLE_RATE = 44100
INPUTS = ("audio",)    # audio in and audio out, whatever the block size
OUTPUTS = ("audio",)


class Waveshaper(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.shape = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):
        frames = x.shape[-1]
        return self.shape(x.reshape(frames, 1)).reshape(1, frames)


def model():
    torch.manual_seed(0)
    return Waveshaper()


def example_input():
    return torch.sin(torch.linspace(0, 2 * torch.pi, BLOCK_SIZE)).reshape(1, BLOCK_SIZE) * 0.5
