"""Ops torch-mlir has no lowering for, written as ops it lowers: our entries of the decomposition table.

Such an op is left in the module and iree-compile fails on a constant it feeds ("failed to
legalize operation 'torch.constant.int'"), whichever model it comes from: the functional copies
of views (`permute_copy`, `view_copy`, `narrow_copy`, `unbind_copy`, `as_strided_copy`), the
view scatters (`diagonal_scatter`, `as_strided_scatter`), the uninitialised tensors PyTorch's
own decompositions make (`empty_strided` of a shape with no elements: torch-mlir accepts only
its contiguous strides, and these are not; `empty_permuted`, `new_empty_strided`), `fmod` of
integers (`fftshift` indexes with it), `resize` and `nonzero_static`. A copy is its view cloned
(a graph's values are never written in place, so the clone only keeps the result its own); a
view scatter writes the source through the flat positions of the view; an uninitialised tensor's
strides hold no value.
"""
from __future__ import annotations

import math

import torch

aten = torch.ops.aten


def _empty(size, dtype=None, device=None):
    return torch.empty(list(size), dtype=dtype, device=device)


def _flat_positions(size, stride, offset) -> torch.Tensor:
    """The storage position of each element of as_strided(size, stride, offset), in its shape."""
    positions = torch.full(list(size), offset or 0, dtype=torch.int64)
    for dim, (length, step) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[dim] = length
        positions = positions + (torch.arange(length, dtype=torch.int64) * step).reshape(shape)
    return positions


def _scatter_at(x: torch.Tensor, positions: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """x with src written at x's flat positions (contiguous, as a functional graph's values are)."""
    flat = x.reshape(-1).index_put((positions.reshape(-1),), src.reshape(-1).to(x.dtype))
    return flat.reshape(x.shape)


def _diagonal_scatter(x, src, offset=0, dim1=0, dim2=1):
    positions = torch.arange(x.numel(), dtype=torch.int64).reshape(x.shape).diagonal(offset, dim1, dim2)
    return _scatter_at(x, positions, src)


def _as_strided_copy(x, size, stride, storage_offset=None):
    return x.reshape(-1)[_flat_positions(size, stride, storage_offset).reshape(-1)].reshape(list(size))


def _as_strided_scatter(x, src, size, stride, storage_offset=None):
    return _scatter_at(x, _flat_positions(size, stride, storage_offset), src)


def _fmod(a, b):
    """Truncated remainder: a - b * trunc(a / b), in integer division for integers."""
    if isinstance(a, torch.Tensor) and not a.is_floating_point():
        return a - b * torch.div(a, b, rounding_mode="trunc")
    return a - b * torch.trunc(a / b)


def _resize(x, size, memory_format=None):
    """The first elements kept in order; new ones are uninitialised in PyTorch (zeros here)."""
    flat, count = x.reshape(-1), math.prod(size)
    if count > flat.numel():
        flat = torch.cat([flat, flat.new_zeros(count - flat.numel())])
    return flat[:count].reshape(list(size))


def _nonzero_static(x, *, size, fill_value=-1):
    """The coordinates of the first `size` nonzero elements: the s-th one's flat index is the
    count of elements with fewer than s + 1 nonzeros up to and including them."""
    if size == 0 or x.numel() == 0:
        return torch.full((size, x.dim()), fill_value, dtype=torch.int64)
    seen = torch.cumsum((x.reshape(-1) != 0).to(torch.int64), 0)
    slots = torch.arange(size, dtype=torch.int64)
    flat = (seen.unsqueeze(0) <= slots.unsqueeze(1)).to(torch.int64).sum(1)
    coordinates, rest = [], flat
    for length in reversed(x.shape):
        coordinates.append(rest % length)
        rest = torch.div(rest, length, rounding_mode="floor")
    result = torch.stack(coordinates[::-1], 1) if coordinates else flat.new_zeros(size, 0)
    return torch.where((slots < seen[-1]).unsqueeze(1), result, fill_value)


def _copy(view: torch.Tensor) -> torch.Tensor:
    """A copy is contiguous (the graph's later views of it rely on that)."""
    return view.clone(memory_format=torch.contiguous_format)


TABLE = {
    aten.permute_copy.default: lambda x, dims: _copy(x.permute(dims)),
    aten.view_copy.default: lambda x, size: _copy(x.reshape(size)),
    aten.narrow_copy.default: lambda x, dim, start, length: _copy(x.narrow(dim, start, length)),
    aten.unbind_copy.int: lambda x, dim=0: tuple(_copy(t) for t in x.unbind(dim)),
    aten.as_strided_copy.default: _as_strided_copy,
    aten.as_strided_scatter.default: _as_strided_scatter,
    aten.diagonal_scatter.default: _diagonal_scatter,
    aten.empty_strided.default: lambda size, stride, *, dtype=None, layout=None, device=None, pin_memory=None:
        _empty(size, dtype, device),
    aten.empty_permuted.default: lambda size, physical_layout, *, dtype=None, layout=None, device=None,
        pin_memory=None: _empty(size, dtype, device),
    aten.new_empty_strided.default: lambda x, size, stride, *, dtype=None, layout=None, device=None,
        pin_memory=None: _empty(size, dtype or x.dtype, device),
    aten.fmod.Scalar: _fmod,
    aten.fmod.Tensor: _fmod,
    aten.resize.default: _resize,
    aten.nonzero_static.default: _nonzero_static,
}
