"""single_mm: one 1024x1024 matrix multiply (Linear without bias) over a block of audio."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class SingleMM(nn.Module):
    def __init__(self, size: int = BLOCK_SIZE):
        super().__init__()
        self.linear = nn.Linear(size, size, bias=False)

    def forward(self, x):
        return self.linear(x)


def model():
    torch.manual_seed(0)  # reproducible weights
    return SingleMM()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
