"""lstm_amp: a neural amp in the style of Neural Amp Modeler's LSTM preset, stateful across blocks.

Input (1, 128): one block of audio. An LSTM (1 input, 24 hidden units, one layer) steps once per
sample and a Linear(24 -> 1) head reads each step: output (1, 128), one sample per input sample.
The LSTM's hidden and cell state are registered buffers, updated in place at the end of every
block, so the next block starts where this one stopped: the compiled module keeps them between
calls, and the glue resets them in setup().
"""
import torch
from torch import nn

HIDDEN = 24
BLOCK_SIZE = 128
SAMPLE_RATE = 44100


class LSTMAmp(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)
        self.register_buffer("hidden", torch.zeros(1, 1, HIDDEN))
        self.register_buffer("cell", torch.zeros(1, 1, HIDDEN))

    def forward(self, block):
        steps, (hidden, cell) = self.lstm(block.unsqueeze(-1), (self.hidden, self.cell))
        self.hidden.copy_(hidden)
        self.cell.copy_(cell)
        return self.head(steps).squeeze(-1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return LSTMAmp()


def example_input():
    """A 220 Hz sine at half scale, the first block of a guitar-like test signal."""
    t = torch.arange(BLOCK_SIZE, dtype=torch.float32) / SAMPLE_RATE
    return (0.5 * torch.sin(2 * torch.pi * 220.0 * t)).unsqueeze(0)
