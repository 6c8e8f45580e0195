"""variational_encoder: mu = ReLU(Linear 1024->128), sigma = exp(Linear 1024->128),
z = mu + sigma * N(0, 1), sampled on every call. Output (1, 128)."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class VariationalEncoder(nn.Module):
    def __init__(self, latent: int = 128):
        super().__init__()
        self.mu = nn.Linear(BLOCK_SIZE, latent)
        self.log_sigma = nn.Linear(BLOCK_SIZE, latent)

    def forward(self, x):
        mu = torch.relu(self.mu(x))
        sigma = torch.exp(self.log_sigma(x))
        return mu + sigma * torch.randn_like(sigma)


def model():
    torch.manual_seed(0)  # reproducible weights
    return VariationalEncoder()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
