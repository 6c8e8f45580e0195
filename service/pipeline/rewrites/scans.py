"""Scans: cumsum and cumprod as accurate as PyTorch's, from float32 arithmetic alone; cummax and
cummin (no lowering in IREE) as log-step scans.

PyTorch's CPU scans of float32 accumulate in double; IREE's run in float32, one rounding per
step: an oscillator's phase summed over a 1024-sample block came out 250x less accurate than
PyTorch (max error 2.8e-3 against float64, PyTorch 1.2e-5). Double is no way out: IREE demotes
f64 to f32, and NEON on the Bela's Cortex-A8 has no double vectors.

So each scan is compensated, fully in parallel (two scans and elementwise math, no loop):
- cumsum: s = cumsum(x) in float32; what each step should have added (x_i) minus what it did
  add (s_i - s_{i-1}) is found exactly with error-free sums (Knuth's TwoSum); those residuals are
  tiny, so their own float32 cumsum is accurate, and s + that is the sum rounded about once.
  It holds for any order IREE sums in: nothing assumes how s was computed.
- cumprod: p = cumprod(x); each step's relative error (p_{i-1} x_i - p_i) / p_i, with the exact
  product from a Veltkamp-free split (masking mantissa bits, so every partial product is exact
  and a fused multiply-add cannot change it); p (1 + cumsum of those) corrects it to first order
  (the second-order term is ~(n eps)^2, far below a rounding for any block size).
- cummax / cummin (a peak-hold envelope): values by doubling (log2 n steps of max with a
  shifted copy); the index is the last position where the input equals its running max, found
  by the same doubling scan over positions (PyTorch's ties also go to the latest).
"""
from __future__ import annotations

import torch

from .core import OpRule

aten = torch.ops.aten
SCAN_OPS = (aten.cumsum.default, aten.cumprod.default)
EXTREMUM_SCAN_OPS = (aten.cummax.default, aten.cummin.default)


def _two_sum(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s, e with s + e == a + b exactly (s the rounded sum), for any magnitudes (Knuth)."""
    s = a + b
    b_part = s - a
    return s, (a - (s - b_part)) + (b - b_part)


def _finite(x: torch.Tensor) -> torch.Tensor:
    return x.abs() < float("inf")   # false for inf and NaN; IREE has no lowering for isfinite


def _previous(x: torch.Tensor, dim: int, first: float) -> torch.Tensor:
    """x shifted one step along dim, `first` in front."""
    head = torch.full_like(x.narrow(dim, 0, 1), first)
    return torch.cat([head, x.narrow(dim, 0, x.shape[dim] - 1)], dim=dim)


def compensated_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    total = torch.cumsum(x, dim)
    step, step_error = _two_sum(total, -_previous(total, dim, 0.0))   # step + step_error: what was added
    missed, missed_error = _two_sum(x, -step)                          # x - step, exactly
    residual = (missed + missed_error) - step_error
    corrected = total + torch.cumsum(residual, dim)
    return torch.where(_finite(corrected), corrected, total)   # past an inf: PyTorch's inf


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x = high + low, each with at most 12 significant bits: their products are exact in float32."""
    high = (x.view(torch.int32) & -4096).view(torch.float32)
    return high, x - high


def _two_product_error(a: torch.Tensor, b: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
    """a * b - product, exactly when product is a * b rounded (Dekker's method, exact partial products)."""
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    return (((a_high * b_high - product) + a_high * b_low) + a_low * b_high) + a_low * b_low


def compensated_cumprod(x: torch.Tensor, dim: int) -> torch.Tensor:
    total = torch.cumprod(x, dim)
    previous = _previous(total, dim, 1.0)
    exact_high = previous * x
    exact_low = _two_product_error(previous, x, exact_high)
    relative = ((exact_high - total) + exact_low) / total
    # a zero, an overflow or a NaN has nothing left to correct
    relative = torch.where(_finite(relative), relative, torch.zeros_like(relative))
    corrected = total + total * torch.cumsum(relative, dim)
    return torch.where(_finite(corrected), corrected, total)


class _Float32Scan(OpRule):
    """A scan over a non-empty float32 tensor; `arguments` names the call's arguments."""

    def applies(self, target, args):
        x = args[0] if args else None
        return getattr(x, "dtype", None) == torch.float32 and x.dim() > 0 and x.numel() > 0

    @staticmethod
    def arguments(call) -> dict:
        names = [a.name for a in call.target._schema.arguments]
        return {**dict(zip(names, call.args)), **call.kwargs}


class CompensatedScan(_Float32Scan):
    why = "cumsum/cumprod compensated to PyTorch's accuracy"
    targets = SCAN_OPS

    def replace(self, call):
        values = self.arguments(call)
        x, dim = values["self"], values["dim"] % max(values["self"].dim(), 1)
        if values.get("dtype") not in (None, torch.float32):
            return call.target(*call.args, **call.kwargs)
        return (compensated_cumsum if call.target is aten.cumsum.default else compensated_cumprod)(x, dim)


def _doubling_scan(x: torch.Tensor, dim: int, combine, fill) -> torch.Tensor:
    """Inclusive scan of an associative, idempotent `combine` in ceil(log2 n) steps."""
    n, shift = x.shape[dim], 1
    while shift < n:
        head = torch.full_like(x.narrow(dim, 0, shift), fill)
        x = combine(x, torch.cat([head, x.narrow(dim, 0, n - shift)], dim=dim))
        shift *= 2
    return x


def extremum_scan(x: torch.Tensor, dim: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    values = _doubling_scan(x, dim, torch.maximum if largest else torch.minimum,
                            float("-inf") if largest else float("inf"))
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    positions = torch.arange(x.shape[dim]).reshape(shape).expand(x.shape)
    marked = torch.where(x == values, positions, torch.zeros_like(positions))
    return values, _doubling_scan(marked, dim, torch.maximum, 0)


class ExtremumScan(_Float32Scan):
    why = "cummax/cummin as log-step scans"
    targets = EXTREMUM_SCAN_OPS

    def replace(self, call):
        values = self.arguments(call)
        x = values["self"]
        return extremum_scan(x, values["dim"] % x.dim(), call.target is aten.cummax.default)


RULES = [CompensatedScan(), ExtremumScan()]
