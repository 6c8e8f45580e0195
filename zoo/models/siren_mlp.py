"""siren_mlp: a SIREN-style MLP applied to every sample: Linear 1->256, then sin() before each
of four Linear layers (256->256 x3, 256->1). Output (1024, 1)."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class SirenMLP(nn.Module):
    def __init__(self, hidden: int = 256):
        super().__init__()
        self.first = nn.Linear(1, hidden)
        self.hidden = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(3)])
        self.last = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.first(x.reshape(BLOCK_SIZE, 1))
        for layer in self.hidden:
            h = layer(torch.sin(h))
        return self.last(torch.sin(h))


def model():
    torch.manual_seed(0)  # reproducible weights
    return SirenMLP()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
