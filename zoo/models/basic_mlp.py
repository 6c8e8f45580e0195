"""basic_mlp: three 1024x1024 Linear layers with Tanh between them."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class BasicMLP(nn.Module):
    def __init__(self, size: int = BLOCK_SIZE):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(size, size), nn.Tanh(),
            nn.Linear(size, size), nn.Tanh(),
            nn.Linear(size, size),
        )

    def forward(self, x):
        return self.layers(x)


def model():
    torch.manual_seed(0)  # reproducible weights
    return BasicMLP()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
