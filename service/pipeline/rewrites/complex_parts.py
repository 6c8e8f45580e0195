"""Complex values where IREE cannot take them, as real and imaginary parts.

IREE 3.13 compiles some complex<f32> arithmetic itself (measured: torch.complex, view_as_real,
.real/.imag, complex times complex or real tensors, polar, .cfloat(), rfft of a whole last dim)
and not the rest (abs and the FFTs: fft.py), so only the rest is lowered here, each op from its parts (view_as_real) and rebuilt with torch.complex:
- the model's complex outputs: returned as real pairs, a trailing dim of 2 (torch.view_as_real),
  which is what the reference (expected.npy) holds too (routing.output_tensors);
- conj (`_conj`, `conj_physical`): no lowering;
- polar with operands of different shapes: IREE's lowering builds a generic of mismatched ranks;
- add and sub (the alpha becomes an integer multiply on complex), and a complex tensor times or
  plus a real number ("Only integer/float dtype supported");
- angle: no lowering (of a real tensor either), atan2 of the parts.
Still not compiled (IREE 3.13): exp, sqrt, division and sums of complex values.
"""
from __future__ import annotations

import torch

from .core import OpRule, Rule

aten = torch.ops.aten


def _parts(z):
    parts = torch.view_as_real(z)
    return parts[..., 0], parts[..., 1]


def _is_complex(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_complex()


class ComplexOutputs(Rule):
    """A model returning complex tensors: the compiled function returns each as real pairs."""
    why = "complex outputs as real pairs (view_as_real)"

    def needs(self, node):
        leaves = torch.utils._pytree.tree_leaves(node.args[0]) if node.op == "output" else []
        return any(isinstance(n, torch.fx.Node) and _is_complex(n.meta.get("val")) for n in leaves)

    def returns(self, outputs):
        if _is_complex(outputs):
            return torch.view_as_real(outputs)
        if not isinstance(outputs, (tuple, list)) or not any(_is_complex(o) for o in outputs):
            return None
        return type(outputs)(torch.view_as_real(o) if _is_complex(o) else o for o in outputs)


def _conj(z):
    re, im = _parts(z)
    return torch.complex(re, -im)


class ConjAsParts(OpRule):
    why = "complex conj from real and imaginary parts"
    targets = (aten._conj.default, aten.conj_physical.default)

    def applies(self, target, args):
        return _is_complex(args[0])

    def replace(self, call):
        return _conj(call.args[0])


def _polar(magnitude, angle):
    return torch.complex(magnitude * torch.cos(angle), magnitude * torch.sin(angle))


class PolarAsParts(OpRule):
    why = "polar from cos and sin"
    targets = (aten.polar.default,)

    def applies(self, target, args):
        return args[0].shape != args[1].shape

    def replace(self, call):
        return _polar(*call.args)


def _sum(a, b, alpha=1, subtract=False):
    sign = -alpha if subtract else alpha
    a_re, a_im = _parts(a) if _is_complex(a) else (a, 0)
    b_re, b_im = _parts(b) if _is_complex(b) else (b, 0)
    return torch.complex(a_re + sign * b_re, a_im + sign * b_im)


def _scaled(z, scalar):
    re, im = _parts(z)
    return torch.complex(re * scalar, im * scalar)


class ComplexArithmetic(OpRule):
    why = "complex add, sub and scaling from real and imaginary parts"
    targets = (aten.add.Tensor, aten.sub.Tensor, aten.add.Scalar, aten.sub.Scalar, aten.mul.Scalar, aten.mul.Tensor)

    def applies(self, target, args):
        if target in (aten.mul.Scalar, aten.mul.Tensor):   # two tensors: IREE multiplies them itself
            return _is_complex(args[0]) and isinstance(args[1], (int, float))
        return any(_is_complex(a) for a in args[:2]) and not any(isinstance(a, complex) for a in args[1:])

    def replace(self, call):
        if call.target in (aten.mul.Scalar, aten.mul.Tensor):
            return _scaled(*call.args)
        alpha = call.kwargs.get("alpha", call.args[2] if len(call.args) > 2 else 1)
        return _sum(call.args[0], call.args[1], alpha, call.target in (aten.sub.Tensor, aten.sub.Scalar))


def _angle(z):
    if not z.is_complex():   # pi for negative numbers, NaN kept
        return torch.where(torch.isnan(z), z, torch.where(z < 0, torch.pi, 0.0))
    re, im = _parts(z)
    return torch.atan2(im, re)


class Angle(OpRule):
    why = "angle as atan2 of the parts (of a real number: 0 or pi)"
    targets = (aten.angle.default,)

    def applies(self, target, args):
        return args[0].is_floating_point() or args[0].is_complex()

    def replace(self, call):
        return _angle(call.args[0])


RULES = [ComplexOutputs(), ConjAsParts(), PolarAsParts(), ComplexArithmetic(), Angle()]
