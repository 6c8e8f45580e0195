"""The probe: a small model a board's IREE runtime must run correctly before bela-iree trusts it
with yours. A matrix product and a tanh: a dispatch that calls a math function, the kind that
crashed on 32-bit ARM before (runtime/README.md), in the module format this compiler writes."""
import torch


class Probe(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)

    def forward(self, x):
        return torch.tanh(self.linear(x))


def model():
    torch.manual_seed(0)
    return Probe()


def example_input():
    return torch.linspace(-1, 1, 16).reshape(1, 16)
