"""mdrnn: the control-rate mixture density RNN of the Bela-IREE paper (after IMPS).

Input (1, 16, 3): the last 16 gesture events, each (x, y, dt). An LSTM with 64 hidden units
reads them; a mixture density head on the last step predicts the next event as a mixture of
5 two-dimensional Gaussians. Output (1, 25): 5 mixture weights (softmax), then 5 means
(x, y pairs), then 5 standard deviations (x, y pairs, positive).
"""
import torch
from torch import nn

SEQUENCE = 16      # gesture events per call
FEATURES = 3       # x, y, dt
MIXTURES = 5
HIDDEN = 64
SAMPLE_RATE = 44100
BLOCK_SIZE = 1024  # the audio block this control-rate model is called once per


class MDRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, MIXTURES * 5)

    def forward(self, gestures):
        out, _ = self.lstm(gestures)
        params = self.head(out[:, -1])
        weights = torch.softmax(params[:, :MIXTURES], dim=-1)
        means = params[:, MIXTURES:3 * MIXTURES]
        deviations = torch.exp(params[:, 3 * MIXTURES:])
        return torch.cat([weights, means, deviations], dim=-1)


def model():
    torch.manual_seed(0)  # reproducible weights
    return MDRNN()


def example_input():
    return torch.rand(1, SEQUENCE, FEATURES, generator=torch.Generator().manual_seed(1))
