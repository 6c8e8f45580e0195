"""transformer_block: the block seen as 128 frames of 8 samples; Linear 8->512; one
TransformerEncoderLayer (d_model 512, 4 heads, feed-forward 512); mean over time. Output (1, 512)."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100
FRAMES, FRAME = 128, 8


class TransformerBlock(nn.Module):
    def __init__(self, width: int = 512):
        super().__init__()
        self.embed = nn.Linear(FRAME, width)
        self.encoder = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=512, batch_first=True)

    def forward(self, x):
        h = self.encoder(self.embed(x.reshape(1, FRAMES, FRAME)))
        return h.mean(dim=1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return TransformerBlock()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
