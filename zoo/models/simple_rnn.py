"""simple_rnn: an Elman RNN (1 -> 256, tanh) run over the 1024 samples of the block, one sample
per time step, from a stored random initial state. Returns the final hidden state (1, 1, 256)."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class SimpleRNN(nn.Module):
    def __init__(self, hidden: int = 256):
        super().__init__()
        self.rnn = nn.RNN(1, hidden)
        self.register_buffer("h0", torch.randn(1, 1, hidden))

    def forward(self, x):
        _, h = self.rnn(x.reshape(BLOCK_SIZE, 1, 1), self.h0)
        return h


def model():
    torch.manual_seed(0)  # reproducible weights and initial state
    return SimpleRNN()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
