"""Interpolation (F.interpolate, nn.Upsample) as gathers and weighted sums along each axis.

IREE 3.13 has no lowering for `upsample_linear1d`, `upsample_bilinear2d` given scale factors,
`upsample_trilinear3d`, or the `nearest-exact` forms (`_upsample_nearest_exact1d/2d/3d`); plain
`nearest` compiles and matches, and is left alone. Shapes are static, so which input samples
feed each output sample, and with what weights, are worked out here once, the way PyTorch's CPU
kernels work them out (in float32, from the same scale), and become constants: each axis is
then two `index_select`s and a weighted sum (linear), or one `index_select` (nearest-exact).
Bilinear and trilinear are linear along each axis in turn: the same math up to float rounding.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .core import OpRule

aten = torch.ops.aten

# op -> (mode, spatial axes)
RESAMPLE_OPS = {
    aten.upsample_linear1d.vec: ("linear", 1), aten.upsample_linear1d.default: ("linear", 1),
    aten.upsample_bilinear2d.vec: ("linear", 2), aten.upsample_bilinear2d.default: ("linear", 2),
    aten.upsample_trilinear3d.vec: ("linear", 3), aten.upsample_trilinear3d.default: ("linear", 3),
    aten._upsample_nearest_exact1d.vec: ("nearest-exact", 1),
    aten._upsample_nearest_exact1d.default: ("nearest-exact", 1),
    aten._upsample_nearest_exact2d.vec: ("nearest-exact", 2),
    aten._upsample_nearest_exact2d.default: ("nearest-exact", 2),
    aten._upsample_nearest_exact3d.vec: ("nearest-exact", 3),
    aten._upsample_nearest_exact3d.default: ("nearest-exact", 3),
}


def _arguments(target, args, kwargs):
    """(input, output size or None, align_corners, per-axis scale factors or None), bound by the
    op's schema: `.vec` takes `scale_factors`, `.default` one `scales*` argument per axis."""
    names = [a.name for a in target._schema.arguments]
    values = {**dict(zip(names, args)), **kwargs}
    scales = values.get("scale_factors") if "scale_factors" in names else [values.get(n) for n in names
                                                                          if n.startswith("scales")]
    return values[names[0]], values.get("output_size"), bool(values.get("align_corners")), scales


def _source_positions(size_in: int, size_out: int, scale: float | None, align_corners: bool, exact: bool):
    """Each output sample's position in the input, in float32 as PyTorch's CPU kernels compute it."""
    dst = np.arange(size_out, dtype=np.float32)
    if align_corners:
        ratio = np.float32((size_in - 1) / (size_out - 1)) if size_out > 1 else np.float32(0)
        return ratio * dst
    # a given scale factor sets the ratio (1/scale), else the sizes do
    ratio = np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(size_in) / np.float32(size_out)
    if exact:   # nearest-exact: the sample whose centre is nearest
        return np.minimum(np.floor((dst + np.float32(0.5)) * ratio), size_in - 1)
    return np.maximum(ratio * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))


def _linear_axis(x: torch.Tensor, dim: int, size_out: int, scale, align_corners: bool) -> torch.Tensor:
    size_in = x.shape[dim]
    source = _source_positions(size_in, size_out, scale, align_corners, exact=False)
    first = source.astype(np.int64)
    second = np.where(first < size_in - 1, first + 1, first)
    weight = np.clip(source - first.astype(np.float32), 0, 1).astype(np.float32)
    shape = [1] * x.dim()
    shape[dim] = size_out
    w1 = torch.from_numpy(weight).reshape(shape)
    w0 = torch.from_numpy((np.float32(1) - weight).astype(np.float32)).reshape(shape)
    return (x.index_select(dim, torch.from_numpy(first)) * w0
            + x.index_select(dim, torch.from_numpy(second)) * w1)


def _nearest_exact_axis(x: torch.Tensor, dim: int, size_out: int, scale) -> torch.Tensor:
    source = _source_positions(x.shape[dim], size_out, scale, False, exact=True)
    return x.index_select(dim, torch.from_numpy(source.astype(np.int64)))


def resample(target, args, kwargs) -> torch.Tensor:
    mode, axes = RESAMPLE_OPS[target]
    x, output_size, align_corners, scales = _arguments(target, args, kwargs)
    spatial = list(x.shape[-axes:])
    scales = list(scales) if scales is not None else [None] * axes
    # with scale factors alone the output size is floor(input size * scale)
    sizes = list(output_size) if output_size is not None else [math.floor(n * s) for n, s in zip(spatial, scales)]
    for axis in range(axes):
        dim = x.dim() - axes + axis
        if mode == "linear":
            x = _linear_axis(x, dim, int(sizes[axis]), scales[axis], align_corners)
        else:
            x = _nearest_exact_axis(x, dim, int(sizes[axis]), scales[axis])
    return x


class InterpolateAsGathers(OpRule):
    why = "interpolation as gathers and weighted sums"
    targets = tuple(RESAMPLE_OPS)

    def applies(self, target, args):
        x = args[0] if args else None
        return x is not None and getattr(x, "dtype", None) in (torch.float32, torch.float64)

    def replace(self, call):
        return resample(call.target, call.args, call.kwargs)


RULES = [InterpolateAsGathers()]
