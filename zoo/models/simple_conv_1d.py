"""simple_conv_1d: Conv1d 1->256 k9, AvgPool 2, ReLU; Conv1d 256->256 k9, AvgPool 2, ReLU;
Conv1d 256->8 k1; mean over time. Output (1, 8)."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class SimpleConv1d(nn.Module):
    def __init__(self, channels: int = 256, classes: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 9), nn.AvgPool1d(2), nn.ReLU(),
            nn.Conv1d(channels, channels, 9), nn.AvgPool1d(2), nn.ReLU(),
            nn.Conv1d(channels, classes, 1),
        )

    def forward(self, x):
        return self.features(x.reshape(1, 1, BLOCK_SIZE)).mean(dim=-1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return SimpleConv1d()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
