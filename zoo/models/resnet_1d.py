"""resnet_1d: Conv1d 1->256 k3; three residual blocks of (LeakyReLU 0.2, Dropout1d 0.1,
Conv1d 256->256 k3 pad 1) x2; Conv1d 256->8 k1; mean over time; softmax. Output (1, 8)."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*[
            layer
            for _ in range(2)
            for layer in (nn.LeakyReLU(0.2), nn.Dropout1d(0.1), nn.Conv1d(channels, channels, 3, padding=1))
        ])

    def forward(self, x):
        return x + self.body(x)


class ResNet1d(nn.Module):
    def __init__(self, channels: int = 256, classes: int = 8, blocks: int = 3):
        super().__init__()
        self.input = nn.Conv1d(1, channels, 3)
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.output = nn.Conv1d(channels, classes, 1)

    def forward(self, x):
        h = self.blocks(self.input(x.reshape(1, 1, BLOCK_SIZE)))
        return torch.softmax(self.output(h).mean(dim=-1), dim=-1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return ResNet1d()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
