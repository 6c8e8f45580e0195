"""log_spectrum: the log power spectrum of the block, log(|rfft(x)|^2 + 1e-7) with an
orthonormal FFT. Output (1, 513)."""
import torch
from torch import nn

BLOCK_SIZE = 1024
SAMPLE_RATE = 44100


class LogSpectrum(nn.Module):
    def forward(self, x):
        spectrum = torch.fft.rfft(x, norm="ortho")
        return torch.log(spectrum.abs() ** 2 + 1e-7)


def model():
    return LogSpectrum()


def example_input():
    return torch.rand(1, BLOCK_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
