"""Distances, order statistics and histograms IREE has no lowering for, by their definitions.

- `dist`, `cdist` (`_cdist_forward`), `pdist` (`_pdist_forward`): p-norms of differences (the
  differences themselves, not PyTorch's |a|^2 + |b|^2 - 2ab, which cancels).
- `median`, `nanmedian`, `kthvalue`, `mode`: read off a sort, which IREE compiles (its
  lowering of kthvalue's top-k fails inside iree-compile). `mode` is the smallest of the most
  frequent values, at its last position, as PyTorch's.
- `histc`: each element's bin compared with every bin (a one-hot sum; no scatter).
- `logcumsumexp` (IREE's overflows to inf) as a log-step scan of stable log-add-exps.
- `index_reduce` as `scatter_reduce`, `put` as `index_put` on the flat tensor, `segment_reduce`
  (1-D lengths or offsets) with a mask of each segment's elements.
- `embedding_bag` (IREE's is wrong) with a mask of each bag's rows.
- a float converted to a byte through int32 (matrix_power is linalg.py's).
"""
from __future__ import annotations

import math
import operator

import torch

from .core import OpRule

aten = torch.ops.aten


def _p_norm(d: torch.Tensor, p: float, dim) -> torch.Tensor:
    """The p-norm of |differences| d over dim (p = 0 counts the nonzero ones)."""
    if p == 0:
        return (d != 0).to(d.dtype).sum(dim)
    if p == math.inf:
        return d.amax(dim)
    if p == -math.inf:
        return d.amin(dim)
    if p == 1:
        return d.sum(dim)
    if p == 2:
        return torch.sqrt((d * d).sum(dim))
    return (d ** p).sum(dim) ** (1 / p)


def _dist(a, b, p=2):
    return _p_norm((a - b).abs().reshape(-1), float(p), 0)


def _cdist(x1, x2, p=2.0, compute_mode=None):
    return _p_norm((x1.unsqueeze(-2) - x2.unsqueeze(-3)).abs(), float(p), -1)


def _pdist(x, p=2.0):
    rows = x.shape[0]
    pairs = [i * rows + j for i in range(rows) for j in range(i + 1, rows)]   # row-major, i < j
    distances = _cdist(x, x, p).reshape(-1)
    return distances[torch.tensor(pairs, dtype=torch.int64)]


def _kth_along(x, k, dim, keepdim):
    """The k-th smallest (from 0, a tensor or an int) along dim and its index (one of them, among equals)."""
    values, indices = torch.sort(x, dim=dim)
    if isinstance(k, int):
        k = torch.full_like(values.narrow(dim, 0, 1), k, dtype=torch.int64)
    value, index = values.gather(dim, k), indices.gather(dim, k)
    return (value, index) if keepdim else (value.squeeze(dim), index.squeeze(dim))


def _median_dim(x, dim=-1, keepdim=False):
    value, index = _kth_along(x, (x.shape[dim] - 1) // 2, dim, True)
    nan = torch.isnan(x)   # a slice with a NaN has NaN as its median, at its first NaN
    has_nan, first_nan = nan.any(dim, keepdim=True), nan.to(torch.int64).argmax(dim, keepdim=True)
    value, index = torch.where(has_nan, math.nan, value), torch.where(has_nan, first_nan, index)
    return (value, index) if keepdim else (value.squeeze(dim), index.squeeze(dim))


def _nanmedian_dim(x, dim=-1, keepdim=False):
    counted = (~torch.isnan(x)).to(torch.int64).sum(dim, keepdim=True)
    return _kth_along(x, torch.clamp((counted - 1) // 2, min=0), dim, keepdim)


def _mode(x, dim=-1, keepdim=False):
    values, _ = torch.sort(x, dim=dim)
    moved = values.movedim(dim, -1)
    counts = (moved.unsqueeze(-1) == moved.unsqueeze(-2)).to(torch.int64).sum(-1)
    first = torch.argmax((counts == counts.amax(-1, keepdim=True)).to(torch.int64), -1, keepdim=True)
    value = moved.gather(-1, first)
    along = x.movedim(dim, -1)
    positions = torch.arange(along.shape[-1], dtype=torch.int64)
    index = torch.where(along == value, positions, -1).amax(-1, keepdim=True)   # its last position
    value, index = value.movedim(-1, dim), index.movedim(-1, dim)
    return (value, index) if keepdim else (value.squeeze(dim), index.squeeze(dim))


def _histc(x, bins=100, min=0, max=0):
    x = x.reshape(-1)
    low, high = torch.tensor(float(min)), torch.tensor(float(max))
    if min == max:   # the data's range, widened by one each way when it is a single value
        low, high = x.amin(), x.amax()
        same = low == high
        low, high = torch.where(same, low - 1, low), torch.where(same, high + 1, high)
    position = torch.floor((x - low) * bins / (high - low)).to(torch.int64)
    position = torch.where(x == high, bins - 1, position)
    inside = (x >= low) & (x <= high)
    one_hot = (position.unsqueeze(1) == torch.arange(bins, dtype=torch.int64)) & inside.unsqueeze(1)
    return one_hot.to(x.dtype).sum(0)


def _log_add_exp(a, b):
    larger = torch.maximum(a, b)
    return torch.where(torch.isinf(larger), larger, larger + torch.log1p(torch.exp(-(a - b).abs())))


def _logcumsumexp(x, dim):
    """Log-step scan (Hillis and Steele): after the step of shift s each value has added in the s
    before it; each addition in log space never exponentiates a positive number."""
    y = x.movedim(dim, -1)
    shift = 1
    while shift < y.shape[-1]:
        before = torch.cat([torch.full_like(y[..., :shift], -math.inf), y[..., :-shift]], -1)
        y, shift = _log_add_exp(y, before), shift * 2
    return y.movedim(-1, dim)


def _index_reduce(x, dim, index, source, reduce, include_self=True):
    """scatter_reduce with the index broadcast along the other dimensions of source."""
    shape = [1] * source.dim()
    shape[dim] = -1
    return x.scatter_reduce(dim, index.reshape(shape).expand(source.shape), source, reduce,
                            include_self=include_self)


def _put(x, index, source, accumulate=False):
    flat = x.reshape(-1)
    index = torch.where(index < 0, index + flat.numel(), index).reshape(-1)
    return flat.index_put((index,), source.reshape(-1), accumulate=accumulate).reshape(x.shape)


def _segment_reduce(data, reduce, *, lengths=None, indices=None, offsets=None, axis=0, unsafe=False,
                    initial=None):
    """Each segment's elements chosen by a mask (segments x elements) from its start and end."""
    bounds = lengths if lengths is not None else offsets
    if bounds is None or bounds.dim() != 1:   # batched segments: left as they are
        return aten.segment_reduce.default(data, reduce, lengths=lengths, indices=indices, offsets=offsets,
                                           axis=axis, unsafe=unsafe, initial=initial)
    if lengths is not None:
        ends = torch.cumsum(lengths, 0)
        starts = ends - lengths
    else:
        starts, ends = offsets[:-1], offsets[1:]
    values = data.movedim(axis, 0)
    position = torch.arange(values.shape[0], dtype=starts.dtype)
    mask = (position >= starts.unsqueeze(1)) & (position < ends.unsqueeze(1))
    mask = mask.reshape(*mask.shape, *[1] * (values.dim() - 1))
    values = values.unsqueeze(0)
    if reduce in ("max", "min"):
        extreme = torch.amax if reduce == "max" else torch.amin
        result = extreme(torch.where(mask, values, -math.inf if reduce == "max" else math.inf), 1)
        if initial is not None:
            result = (torch.maximum if reduce == "max" else torch.minimum)(result, torch.tensor(float(initial)))
    elif reduce == "prod":
        result = torch.where(mask, values, 1.0).prod(1) * (1.0 if initial is None else initial)
    else:
        result = torch.where(mask, values, 0.0).sum(1) + (0.0 if initial is None else initial)
        if reduce == "mean":
            count = (ends - starts).to(data.dtype).reshape(-1, *[1] * (values.dim() - 2))
            result = result / count if initial is None else torch.where(count > 0, result / count, float(initial))
    return result.movedim(0, axis)


class ReductionsByDefinition(OpRule):
    """Ops written as their definitions: op -> function of the op's arguments."""
    why = ("dist, cdist, pdist, median, nanmedian, kthvalue, mode, histc, logcumsumexp, index_reduce, put, "
           "segment_reduce by their definitions")
    definitions = {
        aten.dist.default: _dist,
        aten._cdist_forward.default: _cdist,
        aten.cdist.default: _cdist,
        aten._pdist_forward.default: _pdist,
        aten.pdist.default: _pdist,
        aten.median.default: lambda x: _median_dim(x.reshape(-1), 0)[0],
        aten.median.dim: _median_dim,
        aten.nanmedian.default: lambda x: _nanmedian_dim(x.reshape(-1), 0)[0],
        aten.nanmedian.dim: _nanmedian_dim,
        aten.kthvalue.default: lambda x, k, dim=-1, keepdim=False: _kth_along(x, k - 1, dim, keepdim),
        aten.mode.default: _mode,
        aten.histc.default: _histc,
        aten.logcumsumexp.default: _logcumsumexp,
        aten.index_reduce.default: _index_reduce,
        aten.put.default: _put,
        aten.segment_reduce.default: _segment_reduce,
    }
    targets = tuple(definitions)

    def applies(self, target, args):
        return bool(args) and getattr(args[0], "dtype", None) == torch.float32

    def replace(self, call):
        return self.definitions[call.target](*call.args, **call.kwargs)


def embedding_bags(weight, indices, offsets, mode, per_sample_weights, include_last_offset, padding_idx):
    """Each bag's sum, mean or max of its rows: a mask (bags x indices) from the bags' starts."""
    if indices.dim() == 2:
        bags, bag = indices.shape[0], torch.arange(indices.numel()) // indices.shape[1]
        indices = indices.reshape(-1)
    else:
        starts = offsets[:-1] if include_last_offset else offsets
        bags = starts.shape[0]
        bag = (torch.arange(indices.shape[0]).unsqueeze(1) >= starts[1:]).to(torch.int64).sum(1)
        if include_last_offset:
            bag = torch.where(torch.arange(indices.shape[0]) < offsets[-1], bag, bags)   # past the last: none
    rows = weight[indices]
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.unsqueeze(1)
    mask = bag == torch.arange(bags).unsqueeze(1)
    if padding_idx is not None and padding_idx >= 0:
        mask = mask & (indices != padding_idx)
    if mode == 2:
        largest = torch.where(mask.unsqueeze(2), rows, -math.inf).amax(1)
        return torch.where(mask.any(1, keepdim=True), largest, 0.0)
    total = mask.to(rows.dtype) @ rows
    return total if mode == 0 else total / mask.sum(1, keepdim=True).clamp(min=1).to(rows.dtype)


class EmbeddingBagByMask(OpRule):
    """IREE computes embedding_bag wrong (max error 65.6, op_coverage.md). Replaced only where the
    bags alone are used (its other outputs are PyTorch's bookkeeping for the backward pass)."""
    why = "embedding_bag as a mask of each bag's rows"
    targets = (aten.embedding_bag.padding_idx, aten.embedding_bag.default, aten._embedding_bag.default,
               aten._embedding_bag_forward_only.default)

    @staticmethod
    def _bags_only(node) -> bool:
        return all(user.target is operator.getitem and (user.args[1] == 0 or not user.users) for user in node.users)

    def needs(self, node):
        return super().needs(node) and self._bags_only(node)

    def matches(self, call):
        return super().matches(call) and self._bags_only(call.node)

    def applies(self, target, args):
        return getattr(args[0], "dtype", None) == torch.float32 and not (len(args) > 5 and args[5])   # not sparse

    def replace(self, call):
        names = ["weight", "indices", "offsets", "scale_grad_by_freq", "mode", "sparse", "per_sample_weights",
                 "include_last_offset", "padding_idx"]
        given = {**dict(zip(names, call.args)), **call.kwargs}
        bags = embedding_bags(given["weight"], given["indices"], given["offsets"], given.get("mode", 0),
                              given.get("per_sample_weights"), given.get("include_last_offset", False),
                              given.get("padding_idx"))
        return (bags, None, None, None)


class FloatToByteThroughInt(OpRule):
    """PyTorch converts a float to a byte through an integer (a negative or large value wraps
    around), IREE directly (out of range: undefined); through int32 they agree."""
    why = "float to (u)int8 through int32"
    targets = (aten.to.dtype, aten._to_copy.default)
    small = (torch.uint8, torch.int8)

    def _dtype(self, target, args, kwargs):
        return args[1] if target == aten.to.dtype and len(args) > 1 else kwargs.get("dtype")

    def applies(self, target, args):
        return False   # the dtype may be a keyword: decided in matches() and needs()

    def needs(self, node):
        return (node.op == "call_function" and node.target in self.targets
                and self._converts(node.target, [a.meta.get("val") if isinstance(a, torch.fx.Node) else a
                                                 for a in node.args], node.kwargs))

    def matches(self, call):
        return call.target in self.targets and self._converts(call.target, call.args, call.kwargs)

    def _converts(self, target, args, kwargs):
        return (bool(args) and getattr(args[0], "is_floating_point", lambda: False)()
                and self._dtype(target, args, kwargs) in self.small)

    def replace(self, call):
        dtype = self._dtype(call.target, call.args, call.kwargs)
        return call.args[0].to(torch.int32).to(dtype)


RULES = [ReductionsByDefinition(), EmbeddingBagByMask(), FloatToByteThroughInt()]
