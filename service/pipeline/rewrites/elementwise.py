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
- `frexp` and `nextafter` have no lowering: read off and stepped on the float32 bits.
- `fmax`/`fmin` (the NaN-ignoring max and min) fail inside iree-compile ("tensor.cast" operand
  type), and so do `fmod`, `copysign`, `signbit` and `roll` (leaving a
  constant it cannot legalize); `hypot`, `erfc` and `addmv` have no lowering: each in the ops it
  is defined by.
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


def _nan_ignoring(extremum):
    def function(a, b):
        return torch.where(torch.isnan(a), b, torch.where(torch.isnan(b), a, extremum(a, b)))
    return function


def _sign_bit(b: torch.Tensor) -> torch.Tensor:
    """Negative, or -0.0 (1 / -0.0 is -inf); IREE fails on torch.signbit itself."""
    return (b < 0) | ((b == 0) & (1 / b < 0))


def _roll(x: torch.Tensor, shifts, dims) -> torch.Tensor:
    shifts = list(shifts) if isinstance(shifts, (list, tuple)) else [shifts]
    dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if not dims:   # roll of the flattened tensor
        return _roll(x.reshape(-1), shifts, [0]).reshape(x.shape)
    for shift, dim in zip(shifts, dims):
        size = x.shape[dim]
        shift = shift % size if size else 0
        if shift:
            x = torch.cat([x.narrow(dim, size - shift, shift), x.narrow(dim, 0, size - shift)], dim=dim)
    return x


def _frexp(x: torch.Tensor):
    """Mantissa in [0.5, 1) and exponent, from the float32 bits (a subnormal scaled up by 2^24 first)."""
    subnormal = (x != 0) & (x.abs() < 1.1754943508222875e-38)
    scaled = torch.where(subnormal, x * 16777216.0, x)
    bits = scaled.view(torch.int32)
    biased = torch.div(torch.bitwise_and(bits, 0x7F800000), 1 << 23, rounding_mode="floor")   # IREE: no >> by a scalar
    exponent = biased - 126 - torch.where(subnormal, 24, 0)
    # the exponent bits cleared, then set to 126 (added: IREE has no | by a scalar)
    mantissa = (torch.bitwise_and(bits, -2139095041) + 0x3F000000).view(torch.float32)
    plain = (x == 0) | ~torch.isfinite(x)   # zero, inf and NaN are their own mantissa, exponent 0
    return torch.where(plain, x, mantissa), torch.where(plain, 0, exponent).to(torch.int32)


def _nextafter(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The next float32 after x towards y: its bits one up (away from zero) or one down."""
    x, y = torch.broadcast_tensors(x, y.to(x.dtype))
    bits = x.view(torch.int32)
    away = (y > x) == (x > 0)
    stepped = torch.where(away, bits + 1, bits - 1).view(torch.float32)
    smallest = torch.where(y > 0, 1, -2147483647).to(torch.int32).view(torch.float32)   # +-2^-149
    result = torch.where(x == 0, smallest, stepped)
    return torch.where(torch.isnan(x) | torch.isnan(y), x + y, torch.where(x == y, y, result))


class DefinedOps(OpRule):
    """Ops written as their definitions: op -> function of the op's arguments."""
    why = "fmax, fmin, fmod, copysign, signbit, roll, hypot, erfc, addmv, frexp, nextafter by their definitions"
    definitions = {
        aten.fmax.default: _nan_ignoring(torch.maximum),
        aten.fmin.default: _nan_ignoring(torch.minimum),
        aten.hypot.default: lambda a, b: torch.sqrt(a * a + b * b),
        aten.erfc.default: lambda x: 1 - torch.erf(x),
        aten.addmv.default: lambda x, mat, vec, *, beta=1, alpha=1: beta * x + alpha * (mat @ vec),
        aten.fmod.Scalar: lambda a, b: a - b * torch.trunc(a / b),
        aten.fmod.Tensor: lambda a, b: a - b * torch.trunc(a / b),
        aten.copysign.Tensor: lambda a, b: torch.where(_sign_bit(b), -a.abs(), a.abs()),
        aten.copysign.Scalar: lambda a, b: -a.abs() if b < 0 else a.abs(),
        aten.roll.default: lambda x, shifts, dims=(): _roll(x, shifts, dims),
        aten.signbit.default: _sign_bit,
        aten.frexp.Tensor: _frexp,
        aten.nextafter.default: _nextafter,
    }
    targets = tuple(definitions)

    def applies(self, target, args):
        return _float(args)

    def replace(self, call):
        return self.definitions[call.target](*call.args, **call.kwargs)


RULES = [Log10AsLog(), TanAsReducedSinOverCos(), DefinedOps()]
