"""Elementwise math IREE gets wrong or cannot link, in forms it computes well.

- `log10` (decibels): IREE 3.13's host kernels call `log10f`, which its embedded linker does
  not provide ("failed to link executable"); log(x) / ln(10) rounds once more, well within
  float32's accuracy for audio.
- `tan`: IREE's own approximation loses accuracy towards the poles (max error 1.75 where
  PyTorch's value is ~6000, op_coverage.md), and so does sin(x) / cos(x): its cos has an absolute,
  not relative, error near cos's zeros. So x is first reduced by multiples of pi/2 (Cody and
  Waite's three-part pi/2: k times the first part is exact), and tan of the remainder r
  (|r| <= pi/4) is sin(r) / cos(r), or -cos(r) / sin(r) an odd number of quarter turns away, with
  sin and cos as their Taylor series (IREE's sin is not accurate relative to small values either;
  up to r^9 and r^10 the series are exact to float32 on |r| <= pi/4).
"""
from __future__ import annotations

import math

import torch

from .core import OpRule

aten = torch.ops.aten


def _float(args) -> bool:
    return bool(args) and getattr(args[0], "dtype", None) == torch.float32


class Log10AsLog(OpRule):
    why = "log10 as log / ln 10"
    targets = (aten.log10.default,)

    def applies(self, target, args):
        return _float(args)

    def replace(self, call):
        return torch.log(call.args[0]) * (1 / math.log(10))


class TanAsReducedSinOverCos(OpRule):
    why = "tan as sin / cos of the argument reduced by pi/2"
    targets = (aten.tan.default,)

    def applies(self, target, args):
        return _float(args)

    def replace(self, call):
        return reduced_tan(call.args[0])


# pi/2 in three float32 parts, the first with few enough bits that k * part is exact for |k| < 2^15
_HALF_PI_PARTS = (1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8)


def _horner(z: torch.Tensor, coefficients: list[float]) -> torch.Tensor:
    result = torch.full_like(z, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result = result * z + c
    return result


def _taylor_sin(r: torch.Tensor) -> torch.Tensor:
    """r - r^3/3! + ... - r^11/11!: the first term left out is below float32's rounding on |r| <= pi/4."""
    return r * _horner(r * r, [(-1) ** n / math.factorial(2 * n + 1) for n in range(6)])


def _taylor_cos(r: torch.Tensor) -> torch.Tensor:
    return _horner(r * r, [(-1) ** n / math.factorial(2 * n) for n in range(7)])


def reduced_tan(x: torch.Tensor) -> torch.Tensor:
    k = torch.round(x * (2 / math.pi))
    r = x
    for part in _HALF_PI_PARTS:
        r = r - k * part
    sin, cos = _taylor_sin(r), _taylor_cos(r)
    odd = (k - 2 * torch.floor(k * 0.5)) == 1
    return torch.where(odd, -cos / sin, sin / cos)


RULES = [Log10AsLog(), TanAsReducedSinOverCos()]
