"""Max pooling with `ceil_mode=True` as padding plus floor mode; 3-D average pooling by axis.

IREE 3.13 mis-sizes a ceil-mode max pool ("'linalg.generic' op inferred input/output operand
#1 has shape's dimension #0 to be 5, but found 3": op_coverage.md, max_pool1d/2d/3d). Ceil mode
only adds a last, partial window; padding the end of each pooled axis with -inf so that floor
mode has that window too gives the same maxima (a window never lies wholly in the padding: PyTorch
drops one that would start past the input); indices are mapped back from the padded shape.

IREE mis-sizes `avg_pool3d` too (the same error, op_coverage.md; avg_pool2d as well when an
output axis has one window). A box average is separable: the mean along each axis in turn, each a
sum of strided slices; the divisor, padding counted or not, is the product of each axis's count.
Floor mode without a divisor override only (the box is then the same everywhere).
"""
from __future__ import annotations

import math

import torch

from .core import OpRule

aten = torch.ops.aten
# op -> pooled axes
POOL_OPS = {aten.max_pool1d.default: 1, aten.max_pool2d.default: 2, aten.max_pool3d.default: 3}
WITH_INDICES = {aten.max_pool1d_with_indices.default: 1, aten.max_pool2d_with_indices.default: 2,
                aten.max_pool3d_with_indices.default: 3}


def _per_axis(value, axes: int) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * axes if len(values) == 1 else values


def _ceil_length(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's ceil-mode output length."""
    out = math.ceil((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1
    return out - 1 if (out - 1) * stride >= size + padding else out


def max_pool_ceil_as_floor(target, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    axes = {**POOL_OPS, **WITH_INDICES}[target]
    kernel = _per_axis(kernel_size, axes)
    stride = _per_axis(stride, axes) if stride not in ((), [], None) else kernel
    padding, dilation = _per_axis(padding, axes), _per_axis(dilation, axes)
    extra = []
    for axis in range(axes):
        size = x.shape[x.dim() - axes + axis]
        out = _ceil_length(size, kernel[axis], stride[axis], padding[axis], dilation[axis])
        needed = (out - 1) * stride[axis] + dilation[axis] * (kernel[axis] - 1) + 1 - 2 * padding[axis]
        extra.append(max(needed - size, 0))
    pads = [p for e in reversed(extra) for p in (0, e)]   # F.pad lists the last axis first
    spatial = list(x.shape[x.dim() - axes:])
    x = torch.nn.functional.pad(x, pads, value=float("-inf"))
    result = target(x, kernel, stride, padding, dilation, False)
    if target not in WITH_INDICES:
        return result
    values, indices = result
    return values, _reindex(indices, list(x.shape[x.dim() - axes:]), spatial)


def _reindex(indices: torch.Tensor, padded: list[int], original: list[int]) -> torch.Tensor:
    """Flat positions in the padded input as flat positions in the original (same coordinates)."""
    flat, rest, scale = torch.zeros_like(indices), indices, 1
    for size, size_original in zip(reversed(padded), reversed(original)):
        flat = flat + (rest % size) * scale
        rest, scale = rest // size, scale * size_original
    return flat


class CeilModeMaxPool(OpRule):
    why = "ceil-mode max pooling as padding plus floor mode"
    targets = (*POOL_OPS, *WITH_INDICES)

    def applies(self, target, args):
        return len(args) > 5 and bool(args[5]) and getattr(args[0], "dtype", None) == torch.float32

    def replace(self, call):
        return max_pool_ceil_as_floor(call.target, *call.args, **call.kwargs)


def _pad_axis(x, dim: int, padding: int):
    shape = list(x.shape)
    shape[dim] = padding
    return torch.cat([x.new_zeros(shape), x, x.new_zeros(shape)], dim)


def _box_mean(x, dim: int, kernel: int, stride: int, padding: int, count_include_pad: bool):
    """The mean of each window along one axis: a sum of `kernel` strided slices of the padded axis."""
    windows = (x.shape[dim] + 2 * padding - kernel) // stride + 1
    index = [slice(None)] * x.dim()

    def window_sum(t):
        total = 0
        for offset in range(kernel):
            index[dim] = slice(offset, offset + stride * (windows - 1) + 1, stride)
            total = total + t[tuple(index)]
        return total
    if count_include_pad:
        return window_sum(_pad_axis(x, dim, padding)) / kernel
    ones = [1] * x.dim()
    ones[dim] = x.shape[dim]
    return window_sum(_pad_axis(x, dim, padding)) / window_sum(_pad_axis(x.new_ones(ones), dim, padding))


def avg_pool3d_separable(x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
                         divisor_override=None):
    kernel = _per_axis(kernel, 3)
    stride, padding = _per_axis(stride, 3) if stride else kernel, _per_axis(padding, 3)
    for axis in range(3):
        x = _box_mean(x, x.dim() - 3 + axis, kernel[axis], stride[axis], padding[axis], count_include_pad)
    return x


class SeparableAvgPool3d(OpRule):
    why = "3-D average pooling as a mean along each axis in turn"
    targets = (aten.avg_pool3d.default,)

    def applies(self, target, args):
        ceil_mode = len(args) > 4 and bool(args[4])
        override = len(args) > 6 and args[6] is not None
        return not ceil_mode and not override and getattr(args[0], "dtype", None) == torch.float32

    def replace(self, call):
        return avg_pool3d_separable(*call.args, **call.kwargs)


RULES = [CeilModeMaxPool(), SeparableAvgPool3d()]
