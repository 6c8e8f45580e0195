"""The real FFT and complex magnitudes, in forms IREE compiles (and runs faster).

- `torch.fft.rfft` over a power-of-two length of at least 64 becomes a four-step DFT (n = n1 n2:
  an n2-point DFT of the n1 interleaved columns as one matmul, twiddles, an n1-point DFT of the
  bins kept as a second): IREE runs its FFT as one dispatch per butterfly stage (log_spectrum:
  15 -> 9 us). Tried first (RULES' order).
- any other `rfft(..., norm="ortho"|"forward")` over the last dimension: the normalised form
  fails to legalize; the input is scaled instead (the FFT is linear: the same transform).
- every other torch.fft op (rfft of another dim or length, fft, ifft, their 2-D and n-D forms,
  rfft2/rfftn, irfft*, hfft*, ihfft*; IREE lowers none): one matmul per dim with the DFT's cos
  and sin (float64-computed constants) on the real and imaginary parts, for lengths of at most
  DFT_MAX_LENGTH (the matrices grow as n^2). DDSP's filtered noise and vocoders use irfft.
- fftshift and ifftshift as slices joined (IREE fails on their roll).
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


def _is_whole_last_dim_rfft(args) -> bool:
    """An rfft IREE lowers itself: over the whole last dimension."""
    x, n, dim = args[0], args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else -1
    return n in (None, -1, x.shape[-1]) and dim in (-1, x.dim() - 1)


def _rfft_normalised(x, n=None, dim=-1, norm=None):
    length = n if n is not None else x.shape[dim]
    scale = {"ortho": 1 / math.sqrt(length), "forward": 1 / length}[norm]
    return aten.fft_rfft.default(x * scale, n, dim, None)


class NormalisedRfft(OpRule):
    """An rfft with norm="ortho" or "forward" as IREE's own rfft of the scaled input."""
    why = "normalised rfft as a scaled input"
    targets = (aten.fft_rfft.default,)

    def applies(self, target, args):
        return len(args) > 3 and args[3] in ("ortho", "forward") and _is_whole_last_dim_rfft(args)

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


DFT_MAX_LENGTH = 1024   # the matrices grow as n^2: two of 1024 x 1024 floats, 8 MB

# each torch.fft op as (kind, inverse, how many dims): "c2c" complex to complex, "r2c" a real
# input's bins up to n/2 (on the last dim), "c2r" a Hermitian spectrum's real signal (on the last dim)
_FFT_OPS = {
    aten.fft_fft.default: ("c2c", False, 1), aten.fft_ifft.default: ("c2c", True, 1),
    aten.fft_fft2.default: ("c2c", False, 2), aten.fft_ifft2.default: ("c2c", True, 2),
    aten.fft_fftn.default: ("c2c", False, None), aten.fft_ifftn.default: ("c2c", True, None),
    aten.fft_rfft.default: ("r2c", False, 1), aten.fft_rfft2.default: ("r2c", False, 2),
    aten.fft_rfftn.default: ("r2c", False, None),
    aten.fft_ihfft.default: ("r2c", True, 1), aten.fft_ihfft2.default: ("r2c", True, 2),
    aten.fft_ihfftn.default: ("r2c", True, None),
    aten.fft_irfft.default: ("c2r", True, 1), aten.fft_irfft2.default: ("c2r", True, 2),
    aten.fft_irfftn.default: ("c2r", True, None),
    aten.fft_hfft.default: ("c2r", False, 1), aten.fft_hfft2.default: ("c2r", False, 2),
    aten.fft_hfftn.default: ("c2r", False, None),
}


def _fft_plan(target, shape, args, kwargs) -> tuple[str, bool, list[int], list[int], str | None]:
    """(kind, inverse, dims, lengths, norm) of a torch.fft call (args after the input): the 1-D
    transforms it is made of."""
    kind, inverse, count = _FFT_OPS[target]
    names = ("n", "dim", "norm") if count == 1 else ("s", "dim", "norm")
    given = dict(zip(names, args), **kwargs)
    sizes, dims, norm = given.get(names[0]), given.get("dim", -1 if count == 1 else None), given.get("norm")
    if count == 1:
        sizes, dims = None if sizes is None else [sizes], [dims]
    elif dims is None:
        dims = [-2, -1] if count == 2 else range(-len(sizes), 0) if sizes is not None else range(len(shape))
    dims = [d % len(shape) for d in dims]
    sizes = list(sizes) if sizes is not None else [None] * len(dims)
    lengths = [shape[d] if size in (None, -1) else size for d, size in zip(dims, sizes)]
    if kind == "c2r" and sizes[-1] in (None, -1):
        lengths[-1] = 2 * (shape[dims[-1]] - 1)
    return kind, inverse, dims, lengths, norm


def _scale(n: int, inverse: bool, norm) -> float:
    """torch.fft's normalisation of one n-point transform: "backward" divides the inverse by n."""
    if norm == "ortho":
        return 1 / math.sqrt(n)
    return 1 / n if (norm == "forward") != inverse else 1.0


def _dft(rows: int, columns: int, n: int, sign: int, scale: float, weights=None):
    """scale * cos and scale * sign * sin of 2 pi j k / n, [rows, columns], float64-computed;
    in numpy: computed while the graph is traced, torch ops would be recorded."""
    turns = np.outer(np.arange(rows), np.arange(columns)) % n   # exact: the angle stays below 2 pi
    angle = 2 * np.pi * turns / n
    weights = np.ones((rows, 1)) if weights is None else weights[:, None]
    return (torch.from_numpy((weights * scale * np.cos(angle)).astype(np.float32)),
            torch.from_numpy((weights * scale * sign * np.sin(angle)).astype(np.float32)))


def _transform(re, im, dim: int, n: int, bins: int, sign: int, scale: float):
    """One DFT along dim, as matmuls on the parts (im None: a real input; zero-padded to n samples
    by leaving out the rows, truncated by slicing): (a + ib)(C + iS) = aC - bS + i(aS + bC)."""
    used = min(n, re.shape[dim])
    re = re.movedim(dim, -1)[..., :used]
    cos, sin = _dft(used, bins, n, sign, scale)
    out_re, out_im = re @ cos, re @ sin
    if im is not None:
        im = im.movedim(dim, -1)[..., :used]
        out_re, out_im = out_re - im @ sin, out_im + im @ cos
    return out_re.movedim(-1, dim), out_im.movedim(-1, dim)


def _to_real(re, im, dim: int, n: int, sign: int, scale: float):
    """The real signal of n samples whose spectrum's first bins are given (c2r): every bin but DC
    and (n even) Nyquist stands for its conjugate twin too, hence the weight 2."""
    bins = min(n // 2 + 1, re.shape[dim])   # n // 2 + 1 bins are read; fewer given: the rest are 0
    k = np.arange(bins)
    cos, sin = _dft(bins, n, n, sign, scale, np.where((k == 0) | (2 * k == n), 1.0, 2.0))
    out = re.movedim(dim, -1)[..., :bins] @ cos
    if im is not None:
        out = out - im.movedim(dim, -1)[..., :bins] @ sin
    return out.movedim(-1, dim)


def _fft_as_matmuls(target, x, *args, **kwargs):
    kind, inverse, dims, lengths, norm = _fft_plan(target, x.shape, args, kwargs)
    sign = 1 if inverse else -1
    if x.is_complex():
        parts = torch.view_as_real(x)
        re, im = parts[..., 0], parts[..., 1]
    else:
        re, im = x, None
    if kind == "r2c":   # the last dim first: the others transform the bins kept
        n = lengths[-1]
        re, im = _transform(re, im, dims[-1], n, n // 2 + 1, sign, _scale(n, inverse, norm))
        dims, lengths = dims[:-1], lengths[:-1]
    last = (dims.pop(), lengths.pop()) if kind == "c2r" else None
    for dim, n in zip(dims, lengths):
        re, im = _transform(re, im, dim, n, n, sign, _scale(n, inverse, norm))
    if last is not None:   # the other dims first: what reaches the last is Hermitian along it
        return _to_real(re, im, *last, sign, _scale(last[1], inverse, norm))
    return torch.complex(re, im)


class FftAsMatmuls(OpRule):
    """Every torch.fft op over lengths of at most DFT_MAX_LENGTH but an rfft over the whole last
    dimension (IREE's own, or the rules above): IREE lowers no other FFT (_fft_c2c, _fft_c2r,
    two-sided _fft_r2c, an rfft of another dimension or length)."""
    why = "FFTs as matmuls with the DFT's cos and sin"
    targets = tuple(_FFT_OPS)

    def applies(self, target, args):
        x = args[0]
        if x is None or x.dtype not in (torch.float32, torch.complex64) or x.dim() == 0:
            return False
        if target == aten.fft_rfft.default and _is_whole_last_dim_rfft(args):
            return False
        _, _, _, lengths, _ = _fft_plan(target, x.shape, args[1:], {})
        return all(0 < n <= DFT_MAX_LENGTH for n in lengths)

    def replace(self, call):
        return _fft_as_matmuls(call.target, *call.args, **call.kwargs)


def _shifted(x, dim=None, inverse=False):
    """fftshift (bin 0 to the middle) or its inverse, as slices joined, one dim after the other."""
    dims = range(x.dim()) if dim is None else [dim] if isinstance(dim, int) else dim
    for d in dims:
        n = x.shape[d]
        first = (n + 1) // 2 if inverse else n // 2   # how many samples move to the front
        if first % n:
            x = torch.cat([x.narrow(d, n - first, first), x.narrow(d, 0, n - first)], dim=d)
    return x


class FftShiftAsSlices(OpRule):
    """fftshift and ifftshift: IREE fails on their roll (a constant.int left unlegalized)."""
    why = "fftshift as slices joined"
    targets = (aten.fft_fftshift.default, aten.fft_ifftshift.default)

    def replace(self, call):
        return _shifted(*call.args, **call.kwargs, inverse=call.target == aten.fft_ifftshift.default)


# the order is the priority: the four-step DFT before the scaled input
RULES = [FourStepRfft(), NormalisedRfft(), ComplexAbs(), FftAsMatmuls(), FftShiftAsSlices()]
