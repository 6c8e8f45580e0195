"""One time step of each recurrent cell (RNN tanh/relu, LSTM, GRU) in PyTorch: what the loop and
unrolled forms of recurrent.py compute each step, and what recurrent_kernel.py's kernel computes
(and runs eagerly)."""
from __future__ import annotations

import torch


# A cell takes its step's input projection xw (x @ w_ih.t() + b_ih, computed for the whole
# sequence at once by one matmul before the loop), the state, and w_hh already transposed:
# the per-step product h @ w_hh_t is then a plain row-times-matrix that vectorises along the
# outputs, where h @ w_hh.t() made IREE reduce across vector lanes on every step.
def _cell_rnn(nonlinearity):
    def step(xw, state, w_hh_t, b_hh):
        (h,) = state
        return (nonlinearity(xw + h @ w_hh_t + b_hh),)
    return step


def _cell_lstm(xw, state, w_hh_t, b_hh):
    h, c = state
    gates = xw + h @ w_hh_t + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _cell_gru(xw, state, w_hh_t, b_hh):
    (h,) = state
    xr, xz, xn = xw.chunk(3, dim=-1)
    hr, hz, hn = (h @ w_hh_t + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


CELLS = {"rnn_tanh": _cell_rnn(torch.tanh), "rnn_relu": _cell_rnn(torch.relu), "lstm": _cell_lstm, "gru": _cell_gru}
