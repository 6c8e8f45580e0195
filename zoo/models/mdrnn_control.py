"""mdrnn_control: the Bela-IREE paper's future work, a control-rate MDRNN that plays by itself.

Called once per audio block. Input (1, 3): the last gesture event (x, y, dt). An LSTM with 64
hidden units steps once; its hidden and cell state are registered buffers, carried from call to
call, so the model remembers the whole gesture so far. A mixture density head predicts the next
(x, y) as a mixture of 5 two-dimensional Gaussians (weights, means, standard deviations) and dt
as a positive value; the model then samples: a component chosen with a uniform draw against the
cumulative weights, and (x, y) = its mean + its deviation x a normal draw. Output (1, 3): the next
(x, y, dt), x and y driving two analog outputs. The draws become inputs the glue fills with noise.
"""
import torch
from torch import nn

FEATURES = 3       # x, y, dt
MIXTURES = 5
HIDDEN = 64
SAMPLE_RATE = 44100
BLOCK_SIZE = 128   # the audio block this control-rate model is called once per
INPUTS = ("knobs",)       # the last gesture: analog inputs 0..2, once per block
OUTPUTS = ("analog",)     # the next gesture on analog outputs 0..2


class MDRNNControl(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, HIDDEN, batch_first=True)
        self.mixture = nn.Linear(HIDDEN, MIXTURES * 5)   # weights, 2-D means, 2-D deviations
        self.dt = nn.Linear(HIDDEN, 1)
        self.register_buffer("hidden", torch.zeros(1, 1, HIDDEN))
        self.register_buffer("cell", torch.zeros(1, 1, HIDDEN))

    def forward(self, gesture):
        out, (hidden, cell) = self.lstm(gesture.unsqueeze(1), (self.hidden, self.cell))
        self.hidden.copy_(hidden)
        self.cell.copy_(cell)
        params = self.mixture(out[:, -1])
        weights = torch.softmax(params[:, :MIXTURES], dim=-1)
        means = params[:, MIXTURES:3 * MIXTURES].reshape(1, MIXTURES, 2)
        deviations = torch.exp(params[:, 3 * MIXTURES:]).reshape(1, MIXTURES, 2)
        # choose a component: the first whose cumulative weight passes a uniform draw
        below = (torch.cumsum(weights, dim=-1) < torch.rand(1, 1)).sum(dim=-1, keepdim=True)
        chosen = (torch.arange(MIXTURES).unsqueeze(0) == below.clamp(max=MIXTURES - 1)).to(weights.dtype)
        mean = (chosen.unsqueeze(-1) * means).sum(dim=1)
        deviation = (chosen.unsqueeze(-1) * deviations).sum(dim=1)
        xy = mean + deviation * torch.randn(1, 2)
        dt = nn.functional.softplus(self.dt(out[:, -1]))
        return torch.cat([xy, dt], dim=-1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return MDRNNControl()


def example_input():
    return torch.tensor([[0.5, 0.5, 0.01]])
