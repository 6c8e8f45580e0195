"""1-D convolutions (`nn.Conv1d`, groups 1) as matmuls.

IREE's direct convolution is its weak spot (15-20x slower than ONNX Runtime here); the same
convolution as im2col (K strided slices of the input) plus one matmul compiles to fast matmul
kernels. Same sums, in another order. Two cases do better still, tried first (RULES' order):

- a convolution followed by AvgPool1d(2) becomes one convolution of stride 2 with the averaged
  kernel (the pool is linear: half the outputs, computed directly, about half the multiply-adds);
- a wide 3-tap convolution (stride 1, at least WINOGRAD_MIN_CHANNELS channels in and out)
  becomes Winograd F(4,3): six products per four outputs instead of twelve, the products one
  batched matmul over channels (resnet_1d: 28 -> 17 ms). Not bit-exact like the others, but
  within ~1e-5 of PyTorch.
"""
from __future__ import annotations

import torch

from .core import OpRule, Rule

aten = torch.ops.aten


def _conv1d_as_matmul(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    (step,), (pad,), (spacing,) = stride, padding, dilation
    if pad:
        x = torch.nn.functional.pad(x, (pad, pad))
    batch, channels, length = x.shape
    out_channels, _, kernel = weight.shape
    out_length = (length - spacing * (kernel - 1) - 1) // step + 1
    last = (out_length - 1) * step + 1
    columns = torch.stack([x[:, :, k * spacing:k * spacing + last:step] for k in range(kernel)], dim=2)
    out = weight.reshape(out_channels, channels * kernel) @ columns.reshape(batch, channels * kernel, out_length)
    return out if bias is None else out + bias.reshape(1, out_channels, 1)


def _conv1d(x, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    return _conv1d_as_matmul(x, weight, bias, stride, padding, dilation, False, None, groups)


def _is_plain_conv1d_call(args) -> bool:
    groups = args[6] if len(args) > 6 else 1
    return args[0].dim() == 3 and groups == 1


def _is_plain_conv1d(args) -> bool:
    weight, stride, transposed, groups = args[1], args[3], args[6], args[8]
    return weight is not None and weight.dim() == 3 and len(stride) == 1 and not transposed and groups == 1


# Winograd F(4,3) (Lavin & Gray): four outputs of a 3-tap correlation from six products of
# transformed inputs and kernels instead of twelve; the products become six matmuls over the
# channels, in one batched matmul, so a wide 3-tap convolution does half the multiply-adds.
# (module constants: a torch.tensor() made while tracing would come back as an unlowerable detach_)
_WINOGRAD_BT = torch.tensor(((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
                             (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)), dtype=torch.float32)
_WINOGRAD_G = torch.tensor(((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
                            (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)), dtype=torch.float32)
_WINOGRAD_AT = torch.tensor(((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
                            dtype=torch.float32)
WINOGRAD_MIN_CHANNELS = 64   # below this the transforms cost more than the multiplies saved


def _winograd_applies(x, weight, stride, dilation, groups) -> bool:
    return (weight.shape[2] == 3 and tuple(stride) == (1,) and tuple(dilation) == (1,) and groups == 1
            and min(weight.shape[0], weight.shape[1]) >= WINOGRAD_MIN_CHANNELS and x.shape[2] >= 16)


def _winograd(target, args, kwargs) -> bool:
    """Whether a conv1d or convolution call, as written, is one Winograd F(4,3) takes."""
    if kwargs or len(args) < 2 or args[0].dim() != 3 or args[1].dim() != 3:
        return False
    if target == aten.conv1d.default:  # (x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)
        full = list(args) + [None, None, None, (1,), (0,), (1,), 1][len(args):]
        stride, dilation, groups = full[3], full[5], full[6]
    else:
        if args[6]:  # transposed
            return False
        stride, dilation, groups = args[3], args[5], args[8]
    return _winograd_applies(args[0], args[1], stride, dilation, groups)


def _conv1d_winograd(x, weight, bias, pad):
    batch, channels, length = x.shape
    out_channels = weight.shape[0]
    out_length = length + 2 * pad - 2
    tiles = -(-out_length // 4)
    bt, g, at = (m.to(x.dtype) for m in (_WINOGRAD_BT, _WINOGRAD_G, _WINOGRAD_AT))
    blocks = torch.nn.functional.pad(x, (pad, 4 * tiles + 4 - length - pad)).reshape(batch, channels, tiles + 1, 4)
    # tile t reads inputs 4t .. 4t+5: its own block of four and the next block's first two
    d = torch.cat([blocks[:, :, :tiles], blocks[:, :, 1:, :2]], dim=-1)
    d = d.permute(1, 0, 2, 3).reshape(1, channels, batch * tiles, 6)
    # transforms as broadcast products summed over six: elementwise work IREE fuses, written
    # straight in the layout the next step reads
    v = (bt.reshape(6, 1, 1, 6) * d).sum(-1)                                 # [6, C, B*T]
    u = torch.einsum("jk,ock->joc", g, weight)   # the kernels' transform: constant, folded by IREE
    y = (at.t().reshape(6, 1, 1, 4) * (u @ v).unsqueeze(-1)).sum(0)         # [Co, B*T, 4]
    y = y.reshape(out_channels, batch, tiles * 4).permute(1, 0, 2)[..., :out_length]
    return y if bias is None else y + bias.reshape(1, out_channels, 1)


def _conv_then_pool(x, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    """conv1d (stride 1) then AvgPool1d(2) as one stride-2 convolution with the averaged kernel:
    w'[k] = (w[k] + w[k-1]) / 2 over a kernel one longer."""
    zero = weight.new_zeros(weight.shape[0], weight.shape[1], 1)
    averaged = (torch.cat([weight, zero], dim=2) + torch.cat([zero, weight], dim=2)) * 0.5
    return _conv1d_as_matmul(x, averaged, bias, (2,), padding, dilation, False, None, groups)


def _pool_after(node) -> "torch.fx.Node | None":
    """The AvgPool1d(2) that is a stride-1 conv1d's only user, if so."""
    users = list(node.users)
    if len(users) != 1 or users[0].target != aten.avg_pool1d.default:
        return None
    pool = users[0]
    args = list(pool.args) + [None] * 6
    kernel, stride, padding, ceil_mode = args[1], args[2] or args[1], args[3] or [0], args[4] or False
    conv_stride = node.args[3] if len(node.args) > 3 else [1]
    conv_dilation = node.args[5] if len(node.args) > 5 else [1]
    if list(kernel) == [2] and list(stride) == [2] and list(padding) == [0] and not ceil_mode \
            and list(conv_stride) == [1] and list(conv_dilation) == [1]:
        return pool
    return None


class ConvThenPool(Rule):
    """A conv1d and the AvgPool1d(2) after it, both replaced when the conv runs: the conv's
    value is the pooled one (the pool is its only user), and the pool's call returns it."""
    why = "1-D convolution and AvgPool1d(2) as one stride-2 convolution"

    def needs(self, node):
        return False   # each conv1d this takes is one Im2col needs (a plain conv1d), and asks for

    def matches(self, call):
        if call.node in call.scratch(self):   # the pool, computed with the conv before it
            return True
        return (call.target == aten.conv1d.default and _is_plain_conv1d_call(call.args)
                and _pool_after(call.node) is not None)

    def replace(self, call):
        done_early = call.scratch(self)   # pool node -> its value
        if call.node in done_early:
            return done_early.pop(call.node)
        pool = _pool_after(call.node)
        done_early[pool] = _conv_then_pool(*call.args, **call.kwargs)
        return done_early[pool]  # the pool is its only user


class Winograd(Rule):
    """A wide 3-tap convolution of stride 1 (conv1d or convolution) as Winograd F(4,3)."""
    why = "3-tap 1-D convolution as Winograd F(4,3): half the multiply-adds"

    def needs(self, node):
        return False   # each convolution this takes is one Im2col needs (a plain one), and asks for

    def matches(self, call):
        return (call.target in (aten.conv1d.default, aten.convolution.default)
                and _winograd(call.target, call.args, call.kwargs))

    def replace(self, call):
        args = call.args
        bias = args[2] if len(args) > 2 else None
        padding = args[4] if len(args) > 4 else (0,)
        return _conv1d_winograd(args[0], args[1], bias, padding[0])


class Im2col(OpRule):
    """Any other 1-D convolution of groups 1, as conv1d or as the general convolution op."""
    why = "1-D convolution as im2col and one matmul"
    targets = (aten.convolution.default, aten.conv1d.default)

    def applies(self, target, args):
        return _is_plain_conv1d(args) if target == aten.convolution.default else _is_plain_conv1d_call(args)

    def replace(self, call):
        if call.target == aten.convolution.default:
            return _conv1d_as_matmul(*call.args, **call.kwargs)
        return _conv1d(*call.args, **call.kwargs)


# the order is the priority: the fused pool and Winograd before the plain im2col
RULES = [ConvThenPool(), Winograd(), Im2col()]
