"""gru_knobs: a GRU effect conditioned on two knobs, in the style of GuitarML's NeuralSeed.

Inputs: (1, 128), one block of audio, and (1, 2), two knob values in [0, 1] (say gain and tone),
read once per block. A GRU (1 + 2 inputs, 8 hidden units) steps once per sample, every step seeing
the sample and both knobs; a Linear(8 -> 1) head reads each step and the dry sample is added back
(a residual, as NeuralSeed does). Output (1, 128). The GRU's hidden state is a registered buffer
updated at the end of every block, so the next block starts where this one stopped.
"""
import torch
from torch import nn

HIDDEN = 8
KNOBS = 2
BLOCK_SIZE = 128
SAMPLE_RATE = 44100
INPUTS = ("audio", "knobs")   # the knobs: the latest values of analog inputs 0 and 1, once per block
OUTPUTS = ("audio",)


class GRUKnobs(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(1 + KNOBS, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)
        self.register_buffer("hidden", torch.zeros(1, 1, HIDDEN))

    def forward(self, block, knobs):
        steps = torch.cat([block.unsqueeze(-1), knobs.unsqueeze(1).expand(-1, block.shape[-1], -1)], dim=-1)
        out, hidden = self.gru(steps, self.hidden)
        self.hidden.copy_(hidden)
        return block + self.head(out).squeeze(-1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return GRUKnobs()


def example_input():
    """A 220 Hz sine at half scale, and the knobs at 0.7 and 0.3."""
    t = torch.arange(BLOCK_SIZE, dtype=torch.float32) / SAMPLE_RATE
    return (0.5 * torch.sin(2 * torch.pi * 220.0 * t)).unsqueeze(0), torch.tensor([[0.7, 0.3]])
