"""The real FFT and complex magnitudes, in forms IREE compiles (and runs faster).

- `torch.fft.rfft` over a power-of-two length of at least 64 becomes a four-step DFT (n = n1 n2:
  an n2-point DFT of the n1 interleaved columns as one matmul, twiddles, an n1-point DFT of the
  bins kept as a second): IREE runs its FFT as one dispatch per butterfly stage (log_spectrum:
  15 -> 9 us). Tried first (RULES' order).
- any other `rfft(..., norm="ortho"|"forward")`: the normalised form fails to legalize; the
  input is scaled instead (the FFT is linear, so this is the same transform).
- `torch.fft.irfft` (DDSP's filtered noise, vocoders), no lowering in IREE: as two matmuls of the
  real and imaginary parts with the inverse DFT's cos and sin (float64-computed constants), for
  outputs of at most IRFFT_MAX_LENGTH samples (the matrices grow as n^2).
- `abs()` of a complex tensor: lowered to math.absf on complex, which fails; computed as
  sqrt(re^2 + im^2) from `view_as_real`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .core import OpRule, Rule

aten = torch.ops.aten


def _four_step_factors(n: int) -> tuple[int, int] | None:
    """n = n1 * n2, both powers of two, n1 the smaller: the two stages of the four-step DFT."""
    if n < 64 or n & (n - 1):
        return None
    n1 = 1 << ((n.bit_length() - 1) // 2)
    return n1, n // n1


def _is_four_step_rfft(node: torch.fx.Node) -> bool:
    """A float32 rfft over the whole last dimension, of a power-of-two length of at least 64."""
    if node.op != "call_function" or node.target != aten.fft_rfft.default or node.kwargs:
        return False
    args = list(node.args) + [None] * (4 - len(node.args))
    x, n, dim, norm = args[:4]
    value = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
    if value is None or value.dtype != torch.float32 or value.dim() < 1:
        return False
    return (n in (None, value.shape[-1]) and dim in (None, -1, value.dim() - 1)
            and norm in (None, "backward", "ortho", "forward") and _four_step_factors(value.shape[-1]) is not None)


def _rfft_length_and_scale(node: torch.fx.Node) -> tuple[int, float]:
    args = list(node.args) + [None] * (4 - len(node.args))
    length = node.args[0].meta["val"].shape[-1]
    return length, {None: 1.0, "backward": 1.0, "ortho": 1 / math.sqrt(length), "forward": 1 / length}[args[3]]


def dft_matrices(n: int, scale: float) -> tuple[torch.Tensor, ...]:
    """The four-step DFT's constants for a real input of length n = n1 * n2 (computed in float64):
    the n2-point DFT [n2, 2 n2] (cos | -sin, the norm's scale folded in), the twiddles
    exp(-2 pi i j1 k2 / n) as cos and sin [n1, n2], and the n1-point DFT of the rows rfft keeps,
    as one real matrix [[C, S], [-S, C]] acting on (re; im) [2 rows, 2 n1]."""
    n1, n2 = _four_step_factors(n)
    j2 = torch.arange(n2, dtype=torch.float64)
    inner = -2 * math.pi * torch.outer(j2, j2) / n2
    first = torch.cat([torch.cos(inner), torch.sin(inner)], dim=1) * scale
    j1 = torch.arange(n1, dtype=torch.float64)
    twiddle = -2 * math.pi * torch.outer(j1, j2) / n
    rows = n // 2 // n2 + 1          # bins k = k2 + n2 k1 up to n/2 need k1 < rows
    outer = -2 * math.pi * torch.outer(torch.arange(rows, dtype=torch.float64), j1) / n1
    c, s = torch.cos(outer), torch.sin(outer)
    last = torch.cat([torch.cat([c, -s], dim=1), torch.cat([s, c], dim=1)], dim=0)
    return tuple(m.to(torch.float32) for m in (first, torch.cos(twiddle), torch.sin(twiddle), last))


def _rfft_four_step(x, first, twiddle_cos, twiddle_sin, last):
    """rfft of the last dimension as DFTs of n2 then n1 points (Cooley-Tukey's four-step form):
    two small matmuls and a twiddle instead of IREE's log2(n) butterfly passes, one dispatch each."""
    n = x.shape[-1]
    n1, n2 = twiddle_cos.shape
    batch = x.shape[:-1]
    rows = last.shape[0] // 2
    columns = x.reshape(-1, n2, n1).transpose(-1, -2)               # [b, j1, j2]: x[j1 + n1 j2]
    a = columns @ first                                              # [b, j1, k2]: re | im
    a_re, a_im = a[..., :n2], a[..., n2:]
    b = torch.cat([a_re * twiddle_cos - a_im * twiddle_sin, a_re * twiddle_sin + a_im * twiddle_cos], dim=-2)
    spectrum = last @ b                                              # [b, re rows | im rows, k2]
    bins = n // 2 + 1
    re = spectrum[:, :rows].reshape(-1, rows * n2)[:, :bins]
    im = spectrum[:, rows:].reshape(-1, rows * n2)[:, :bins]
    return torch.complex(re, im).reshape(*batch, bins)


class FourStepRfft(Rule):
    """A float32 rfft over a whole power-of-two last dimension (>= 64), its norm folded into
    the DFT matrices laid out at export."""
    why = "rfft as a four-step DFT: two small matmuls"
    needs_graph = "module"   # lay_out() decides on the same graph

    def needs(self, node):
        return _is_four_step_rfft(node)

    def lay_out(self, node, layout):
        return {"dft": dft_matrices(*_rfft_length_and_scale(node))} if _is_four_step_rfft(node) else {}

    def matches(self, call):
        return "dft" in call.constants

    def replace(self, call):
        return _rfft_four_step(call.args[0], *call.constants["dft"])


def _rfft_normalised(x, n=None, dim=-1, norm=None):
    length = n if n is not None else x.shape[dim]
    scale = {"ortho": 1 / math.sqrt(length), "forward": 1 / length}[norm]
    return aten.fft_rfft.default(x * scale, n, dim, None)


class NormalisedRfft(OpRule):
    """An rfft with norm="ortho" or "forward" as IREE's own rfft of the scaled input."""
    why = "normalised rfft as a scaled input"
    targets = (aten.fft_rfft.default,)

    def applies(self, target, args):
        return len(args) > 3 and args[3] in ("ortho", "forward")

    def replace(self, call):
        return _rfft_normalised(*call.args, **call.kwargs)


def _complex_abs(z):
    parts = torch.view_as_real(z)
    return torch.sqrt(parts[..., 0] * parts[..., 0] + parts[..., 1] * parts[..., 1])


class ComplexAbs(OpRule):
    why = "complex abs from real and imaginary parts"
    targets = (aten.abs.default,)

    def applies(self, target, args):
        return args[0].is_complex()

    def replace(self, call):
        return _complex_abs(*call.args, **call.kwargs)


IRFFT_MAX_LENGTH = 1024   # the two matrices: 2 x 513 x 1024 floats, 4 MB


def inverse_dft_matrices(n: int, bins: int, norm) -> tuple[torch.Tensor, torch.Tensor]:
    """x[t] = sum_k re_k C[k, t] + im_k S[k, t] for the first `bins` bins of a length-n real signal:
    every bin but DC and (n even) Nyquist stands for its conjugate twin too, hence the weight 2.
    In numpy: computed while the graph is traced, torch ops would be recorded (in float64)."""
    k = np.arange(bins, dtype=np.float64)
    angle = 2 * np.pi * np.outer(k, np.arange(n, dtype=np.float64)) / n
    weight = np.where((k == 0) | (2 * k == n), 1.0, 2.0)[:, None]
    scale = {None: 1 / n, "backward": 1 / n, "ortho": 1 / math.sqrt(n), "forward": 1.0}[norm]
    return (torch.from_numpy((weight * scale * np.cos(angle)).astype(np.float32)),
            torch.from_numpy((-weight * scale * np.sin(angle)).astype(np.float32)))


def _irfft_as_matmuls(z, n=None, dim=-1, norm=None):
    z = z.movedim(dim, -1)
    n = n if n is not None else 2 * (z.shape[-1] - 1)
    bins = min(n // 2 + 1, z.shape[-1])   # irfft uses n // 2 + 1 bins; fewer given: the rest are 0
    parts = torch.view_as_real(z[..., :bins])
    cos, sin = inverse_dft_matrices(n, bins, norm)
    return (parts[..., 0] @ cos + parts[..., 1] @ sin).movedim(-1, dim)


def _irfft_length(args) -> int | None:
    z, n = args[0], args[1] if len(args) > 1 else None
    dim = args[2] if len(args) > 2 and args[2] is not None else -1
    return n if n is not None else 2 * (z.shape[dim] - 1)


class IrfftAsMatmuls(OpRule):
    why = "irfft as matmuls with the inverse DFT"
    targets = (aten.fft_irfft.default,)

    def applies(self, target, args):
        length = _irfft_length(args)
        return args[0].dtype == torch.complex64 and length is not None and 0 < length <= IRFFT_MAX_LENGTH

    def replace(self, call):
        return _irfft_as_matmuls(*call.args, **call.kwargs)


# the order is the priority: the four-step DFT before the scaled input
RULES = [FourStepRfft(), NormalisedRfft(), ComplexAbs(), IrfftAsMatmuls()]
