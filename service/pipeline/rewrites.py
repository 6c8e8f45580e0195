"""Exact rewrites of ops IREE cannot take as written, applied to the exported graph.

The user's model stays as written. After torch.export, the graph is re-run through an
interpreter that swaps each op listed in REWRITES for an equivalent built from ops IREE
compiles, and re-exported; the node metadata (the user's source lines) is preserved so
compile errors still point at model.py. Each rewrite is exact math (Winograd up to rounding);
tests compare its output with PyTorch's.

- recurrent layers (nn.RNN, nn.LSTM, nn.GRU): IREE cannot lower `aten.rnn_tanh`, `lstm`,
  `gru`; the stock decomposition unrolls time (a 1024-step RNN: 1.5 MB of MLIR, 72 s of
  compile). Here time stays a loop (`torch.while_loop` -> scf.while), so it compiles in ~1 s;
  sequences of at most UNROLL_MAX_STEPS steps are unrolled, which runs faster and still compiles fast.
  EmitC cannot express that loop (its sync wrapper would have to yield inside it: "callee must
  be an import for yieldable call", after which iree-compile hangs), so for `--format emitc`
  the same cell is unrolled over time instead (`unroll_loops=True`): slower to compile, same math.
- `torch.fft.rfft(..., norm="ortho"|"forward")`: the normalised form fails to legalize; the
  input is scaled instead (the FFT is linear, so this is the same transform). Over a power-of-two
  length of at least 64 the rfft becomes a four-step DFT instead (n = n1 n2: an n2-point DFT of
  the n1 interleaved columns as one matmul, twiddles, an n1-point DFT of the bins kept as a
  second): IREE runs its FFT as one dispatch per butterfly stage (log_spectrum: 15 -> 9 us).
- `abs()` of a complex tensor: lowered to math.absf on complex, which fails; computed as
  sqrt(re^2 + im^2) from `view_as_real`.
- dropout in inference (`nn.Dropout1d/2d`, `feature_dropout`, `alpha_dropout` with train=False):
  IREE has no lowering for the feature forms; in inference every dropout is the identity.
- `scaled_dot_product_attention` (nn.MultiheadAttention, TransformerEncoderLayer): IREE's fused
  attention kernel is slow on CPU; written out as softmax(q k^T * scale) v.
- `detach_` (torch.export adds it to tensors a forward() creates, e.g. `torch.tensor([0])`, when
  the model has parameters): no lowering in IREE; without autograd it is the identity.
- 1-D convolutions (`nn.Conv1d`, groups 1): IREE's direct convolution is its weak spot (15-20x
  slower than ONNX Runtime here); the same convolution as im2col (K strided slices of the input)
  plus one matmul compiles to fast matmul kernels. Same sums, in another order. A convolution
  followed by AvgPool1d(2) becomes one convolution of stride 2 with the averaged kernel (the
  pool is linear: half the outputs, computed directly, about half the multiply-adds). A wide
  3-tap convolution (stride 1, at least 64 channels in and out) becomes Winograd F(4,3): six
  products per four outputs instead of twelve, the products one batched matmul over channels
  (resnet_1d: 28 -> 17 ms). Not bit-exact like the others, but within ~1e-5 of PyTorch.
- recurrent layers compute every step's input projection in one matmul before the loop and
  multiply by a pre-transposed w_hh inside it (simple_rnn: 10.7 -> 6.4 ms).
- a Linear layer applied to one row (an MLP over the block, an encoder's projection) is a
  matrix-vector product bound by memory; IREE's default keeps one accumulator per 16 outputs and
  stalls on every multiply-add. Its weight is packed in blocks of GEMV_BLOCK outputs (computed
  once at load) and tuning_spec.py gives that product a config with a whole block of
  accumulators (single_mm: 75 -> 48 us). Linears of the same row share one packed weight.
- a Linear fed (through layout ops that keep rows whole: transposes of leading dims, reshapes
  keeping the last) by another Linear with fewer inputs than outputs is one Linear of the first
  one's input: W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2), the product computed once at
  export in float64. An embedding 8 -> 512 feeding attention's 512 -> 1536 projection then costs
  8 multiply-adds per output, not 512 (transformer_block: half its arithmetic). The first Linear
  still runs if anything else reads it (the residual).
- random sampling (`randn`, `rand` and their `_like` forms): the generator does not compile
  for every target and cannot be seeded from outside; each draw becomes an extra input of the
  compiled function, filled by the caller (the runtime draws it, tests pass PyTorch's draws).
"""
from __future__ import annotations

import contextvars
import math
import operator
from dataclasses import dataclass

import torch
from torch._higher_order_ops.while_loop import while_loop
from torch.fx import traceback as fx_traceback

from .tuning_spec import GEMV_BLOCK

aten = torch.ops.aten
_UNROLL_LOOPS = contextvars.ContextVar("unroll_loops", default=False)
_SEQUENCE_USED = contextvars.ContextVar("sequence_used", default=True)   # the layer's output sequence
# position of w_hh in the layer's parameter list -> that weight transposed, stored in that layout
_W_HH_T = contextvars.ContextVar("w_hh_t", default={})
# Short sequences run faster unrolled (no per-step loop overhead) and still compile in a second
UNROLL_MAX_STEPS = 64


@dataclass
class NoiseInput:
    """A random draw of the model that became an input of the compiled function."""
    shape: list[int]
    distribution: str  # "normal" (mean 0, std 1) or "uniform" ([0, 1))

    def to_json(self) -> dict:
        return {"shape": self.shape, "dtype": "float32", "role": "noise", "distribution": self.distribution}


RANDOM_OPS = {
    aten.randn.default: "normal", aten.randn_like.default: "normal",
    aten.rand.default: "uniform", aten.rand_like.default: "uniform",
}


def _rfft_normalised(x, n=None, dim=-1, norm=None):
    length = n if n is not None else x.shape[dim]
    scale = {"ortho": 1 / math.sqrt(length), "forward": 1 / length}[norm]
    return aten.fft_rfft.default(x * scale, n, dim, None)


def _rfft_length_and_scale(node: torch.fx.Node) -> tuple[int, float]:
    args = list(node.args) + [None] * (4 - len(node.args))
    length = node.args[0].meta["val"].shape[-1]
    return length, {None: 1.0, "backward": 1.0, "ortho": 1 / math.sqrt(length), "forward": 1 / length}[args[3]]


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


def _complex_abs(z):
    parts = torch.view_as_real(z)
    return torch.sqrt(parts[..., 0] * parts[..., 0] + parts[..., 1] * parts[..., 1])


# ---- recurrent layers as while loops -------------------------------------------------------

# A cell takes its step's input projection xw (x @ w_ih.t() + b_ih, computed for the whole
# sequence at once by one matmul before the loop), the state, and w_hh already transposed:
# the per-step product h @ w_hh_t is then a plain row-times-matrix that vectorises along the
# outputs, where h @ w_hh.t() made IREE reduce across vector lanes on every step.
def _cell_rnn(nonlinearity):
    def step(xw, state, w_hh_t, b_hh):
        (h,) = state
        return (nonlinearity(xw + h @ w_hh_t + b_hh),)
    return step


def _cell_lstm(xw, state, w_hh_t, b_hh):
    h, c = state
    gates = xw + h @ w_hh_t + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _cell_gru(xw, state, w_hh_t, b_hh):
    (h,) = state
    xr, xz, xn = xw.chunk(3, dim=-1)
    hr, hz, hn = (h @ w_hh_t + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


def _run_direction(cell, seq, state, weights, reverse, keep_outputs=True, w_hh_t=None):
    """One layer, one direction, over seq (time, batch, features) as a while loop.

    Everything the body reads is loop-carried: torch-mlir's import of while_loop drops
    closed-over tensors (additional_inputs) in IREE 3.13. The output sequence is carried (and
    written each step) only when something reads it: for a model that keeps the final state
    alone, that buffer would be copied on every step.
    """
    steps = seq.shape[0]
    w_ih, w_hh, b_ih, b_hh = weights
    # every step's input projection, in one 2-D matmul (a 3-D one becomes a slower batch matmul)
    seq = (seq.reshape(steps * seq.shape[1], -1) @ w_ih.t()).reshape(steps, seq.shape[1], -1) + b_ih
    # stored transposed (see _RewrittenModel): transposed here, IREE would fold the transpose
    # back into the product and reduce across vector lanes on every step
    weights = (w_hh.t().contiguous() if w_hh_t is None else w_hh_t, b_hh)
    if _UNROLL_LOOPS.get() or steps <= UNROLL_MAX_STEPS:
        outputs = [None] * steps
        for t in (reversed(range(steps)) if reverse else range(steps)):
            state = cell(seq[t], state, *weights)
            outputs[t] = state[0]
        return torch.stack(outputs), tuple(state)
    hidden = state[0].shape[-1]
    outputs = seq.new_zeros(steps, seq.shape[1], hidden) if keep_outputs else seq.new_zeros(1)

    # each iteration runs `chunk` steps: the loop's own cost (copies of what it carries) is paid
    # once per chunk instead of once per step
    chunk = next(c for c in (32, 16, 8, 4, 2, 1) if steps % c == 0)

    def cond(i, *_):
        return i < steps

    def body(i, seq, outputs, *rest):
        state, weights = rest[:len(rest) - 2], rest[len(rest) - 2:]
        for j in range(chunk):
            t = (steps - 1 - (i + j)) if reverse else i + j
            x = seq.index_select(0, t.reshape(1)).squeeze(0)
            state = cell(x, state, *weights)
            if keep_outputs:
                outputs = outputs.index_put((t.reshape(1),), state[0].unsqueeze(0))
        if not keep_outputs:
            outputs = outputs.clone()
        return (i + chunk, seq.clone(), outputs) + tuple(state) + tuple(w.clone() for w in weights)

    start = torch.zeros((), dtype=torch.int64)
    # a loop's result fed straight into the next loop trips torch.export (2.13): pass a copy
    result = while_loop(cond, body, (start, seq.clone(), outputs, *state, *weights))
    final = tuple(result[3:3 + len(state)])
    return (result[2] if keep_outputs else seq.new_zeros(steps, seq.shape[1], hidden)), final


def _recurrent(cell, n_state):
    def rewrite(seq, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        if train and dropout:
            raise NotImplementedError("recurrent dropout in training mode")
        initial = list(hx) if isinstance(hx, (list, tuple)) else [hx]
        if batch_first:
            seq = seq.transpose(0, 1)
        directions = 2 if bidirectional else 1
        per_layer = 4 if has_biases else 2
        finals = [[] for _ in range(n_state)]
        for layer in range(num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                w = params[index * per_layer:(index + 1) * per_layer]
                if not has_biases:
                    w = [w[0], w[1], w[0].new_zeros(w[0].shape[0]), w[1].new_zeros(w[1].shape[0])]
                state = tuple(s[index] for s in initial)
                keep = layer < num_layers - 1 or _SEQUENCE_USED.get()
                out, state = _run_direction(cell, seq, state, tuple(w), reverse=direction == 1, keep_outputs=keep,
                                            w_hh_t=_W_HH_T.get().get(index * per_layer + 1))
                outputs.append(out)
                for k in range(n_state):
                    finals[k].append(state[k])
            seq = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
        output = seq.transpose(0, 1) if batch_first else seq
        return (output, *(torch.stack(f) for f in finals))
    return rewrite


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


def _conv1d(x, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    return _conv1d_as_matmul(x, weight, bias, stride, padding, dilation, False, None, groups)


def _is_plain_conv1d_call(args) -> bool:
    groups = args[6] if len(args) > 6 else 1
    return args[0].dim() == 3 and groups == 1


def _is_plain_conv1d(args) -> bool:
    weight, stride, transposed, groups = args[1], args[3], args[6], args[8]
    return weight is not None and weight.dim() == 3 and len(stride) == 1 and not transposed and groups == 1


def _attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """softmax(q k^T * scale + mask) v, written out: IREE's fused attention kernel runs ~10x
    slower than these two matmuls and a softmax on this CPU (transformer_block: 47 of 55 ms)."""
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        length, source = q.shape[-2], k.shape[-2]
        scores = scores.masked_fill(torch.ones(length, source, dtype=torch.bool).triu(1), float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.softmax(scores, dim=-1) @ v


def _attention_applies(args) -> bool:
    return len(args) < 5 or not args[4]  # no dropout inside attention (inference)


def pack_one_row_weight(weight: torch.Tensor) -> torch.Tensor:
    """A Linear weight [out, in] as [blocks, in, GEMV_BLOCK] (zero-padded outputs): each block of
    outputs one contiguous stream of the matrix-vector product."""
    out_features, in_features = weight.shape
    blocks = -(-out_features // GEMV_BLOCK)
    padded = torch.nn.functional.pad(weight.detach(), (0, 0, 0, blocks * GEMV_BLOCK - out_features))
    return padded.reshape(blocks, GEMV_BLOCK, in_features).transpose(1, 2).contiguous()


def _linear_one_row(x, packed):
    """x @ weight.T for a single row, over the packed weight, as one batched matmul that
    tuning_spec.py's config runs at memory speed; all blocks' outputs, padding included.
    Same sums, same order."""
    blocks, in_features, _ = packed.shape
    row = x.reshape(1, 1, in_features).expand(blocks, 1, in_features)
    return torch.bmm(row, packed).reshape(*x.shape[:-1], blocks * GEMV_BLOCK)


def _is_stored(arg) -> bool:
    return isinstance(arg, torch.fx.Node) and arg.op == "get_attr"


def _linear_by_stored_matrix(node: torch.fx.Node) -> bool:
    """aten.linear (positional arguments) by a stored float32 matrix."""
    if node.op != "call_function" or node.target != aten.linear.default or node.kwargs or not _is_stored(node.args[1]):
        return False
    weight = node.args[1].meta.get("val")
    return weight is not None and weight.dim() == 2 and weight.dtype == torch.float32


def _is_one_row_linear(node: torch.fx.Node) -> bool:
    """A Linear of one input row by a stored weight, with enough outputs to fill blocks."""
    if not _linear_by_stored_matrix(node):
        return False
    x_val = node.args[0].meta.get("val")
    if x_val is None or x_val.dim() < 1 or x_val.numel() != x_val.shape[-1] or x_val.dtype != torch.float32:
        return False
    out_features = node.args[1].meta["val"].shape[0]
    return out_features % GEMV_BLOCK == 0 or out_features >= 4 * GEMV_BLOCK


# ops that move whole rows of the last dimension around without touching their contents
ROW_LAYOUT_OPS = (aten.transpose.int, aten.permute.default, aten.reshape.default, aten.view.default,
                  aten.unsqueeze.default, aten.squeeze.dim, aten.contiguous.default, aten.clone.default)


def _keeps_rows(node: torch.fx.Node) -> bool:
    """A layout op after which every row of the last dimension is still one row, in order."""
    if node.op != "call_function" or node.target not in ROW_LAYOUT_OPS or len(node.all_input_nodes) != 1:
        return False
    before, after = node.args[0].meta.get("val"), node.meta.get("val")
    if before is None or after is None or before.dim() == 0 or after.dim() == 0 or before.shape[-1] != after.shape[-1]:
        return False
    last = before.dim() - 1
    if node.target == aten.transpose.int:
        return all(d % before.dim() != last for d in node.args[1:3])
    if node.target == aten.permute.default:
        return node.args[1][-1] % before.dim() == last
    if node.target == aten.unsqueeze.default:
        return node.args[1] % (before.dim() + 1) <= last
    if node.target == aten.squeeze.dim:
        return node.args[1] % before.dim() != last
    return True   # reshape and view keeping the last size regroup whole rows; copies keep them


def _stored_linear(node: torch.fx.Node) -> bool:
    """aten.linear by a stored float32 matrix and a stored bias, or none."""
    bias = node.args[2] if len(node.args) > 2 else None
    return _linear_by_stored_matrix(node) and (bias is None or _is_stored(bias))


def linear_fold_source(node: torch.fx.Node) -> tuple[torch.fx.Node, list[torch.fx.Node]] | None:
    """For a Linear whose input is another Linear's output moved by row layout ops, when one
    Linear of the first one's input is cheaper (it has fewer inputs than outputs): that first
    Linear and the layout ops between, in order."""
    if not _stored_linear(node):
        return None
    chain, source = [], node.args[0]
    while isinstance(source, torch.fx.Node) and _keeps_rows(source):
        chain.insert(0, source)
        source = source.args[0]
    if not isinstance(source, torch.fx.Node) or not _stored_linear(source):
        return None
    outputs, inputs = source.args[1].meta["val"].shape
    return (source, chain) if inputs < outputs else None


def folded_linear(first_weight: torch.Tensor, first_bias: torch.Tensor | None, second_weight: torch.Tensor,
                  second_bias: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """(W2 W1, W2 b1 + b2): the weight and bias (if any) of two Linears as one, summed in float64."""
    w2 = second_weight.detach().double()
    weight = (w2 @ first_weight.detach().double()).float()
    biases = ([w2 @ first_bias.detach().double()] if first_bias is not None else []) + \
             ([second_bias.detach().double()] if second_bias is not None else [])
    return (weight, sum(biases).float()) if biases else (weight,)


def _identity(x, *_):
    return x


def _not_training(args) -> bool:
    return len(args) > 2 and args[2] is False


# op -> (why, replacement, applies to these arguments?)
REWRITES = {
    **{op: ("dropout is the identity in inference", _identity, _not_training)
       for op in (aten.dropout.default, aten.feature_dropout.default, aten.alpha_dropout.default,
                  aten.feature_alpha_dropout.default)},
    aten.detach_.default: ("detach is the identity in inference", _identity, None),
    aten.scaled_dot_product_attention.default: ("attention as two matmuls and a softmax", _attention, _attention_applies),
    aten.convolution.default: ("1-D convolution as im2col and one matmul", _conv1d_as_matmul, _is_plain_conv1d),
    aten.conv1d.default: ("1-D convolution as im2col and one matmul", _conv1d, _is_plain_conv1d_call),
    aten.rnn_tanh.input: ("recurrent layer as a time loop (unrolled if short)", _recurrent(_cell_rnn(torch.tanh), 1), None),
    aten.rnn_relu.input: ("recurrent layer as a time loop (unrolled if short)", _recurrent(_cell_rnn(torch.relu), 1), None),
    aten.lstm.input: ("recurrent layer as a time loop (unrolled if short)", _recurrent(_cell_lstm, 2), None),
    aten.gru.input: ("recurrent layer as a time loop (unrolled if short)", _recurrent(_cell_gru, 1), None),
    aten.fft_rfft.default: ("normalised rfft as a scaled input", _rfft_normalised,
                            lambda args: len(args) > 3 and args[3] in ("ortho", "forward")),
    aten.abs.default: ("complex abs from real and imaginary parts", _complex_abs,
                       lambda args: args[0].is_complex()),
}


RECURRENT_OPS = (aten.rnn_tanh.input, aten.rnn_relu.input, aten.lstm.input, aten.gru.input)


def _stored_w_hh(node: torch.fx.Node) -> dict[int, str]:
    """A recurrent layer's w_hh parameters that are stored weights: position -> attribute name."""
    if node.op != "call_function" or node.target not in RECURRENT_OPS:
        return {}
    params, has_biases = node.args[2], node.args[3]
    per_layer = 4 if has_biases else 2
    return {i: params[i].target for i in range(1, len(params), per_layer)
            if isinstance(params[i], torch.fx.Node) and params[i].op == "get_attr"}


LINEAR_FOLD = "two Linears in a row as one, where that is fewer multiply-adds"


class _Rewriter(torch.fx.Interpreter):
    def __init__(self, module, noise, constants=None, linear_slices=None, folds=None):
        super().__init__(module, garbage_collect_values=False)   # a fold reads an earlier input again
        self.noise = iter(noise)
        self.constants = constants or {}   # node name -> {key: tensor laid out for it} (_RewrittenModel)
        self.linear_slices = linear_slices or {}   # one-row Linear -> (its group, first output, outputs)
        self.folds = folds or {}   # Linear -> (the first Linear's input, layout ops between) (_RewrittenModel)
        self.group_outputs: dict = {}
        self.applied: set[str] = set()
        self.node = None
        self.done_early: dict = {}   # pool node -> its value, computed with the conv before it

    def run_node(self, node):
        self.node = node
        return super().run_node(node)

    def call_function(self, target, args, kwargs):
        if self.node in self.done_early:
            return self.done_early.pop(self.node)
        if target == aten.conv1d.default and _is_plain_conv1d_call(args):
            pool = _pool_after(self.node)
            if pool is not None:
                self.applied.add("1-D convolution and AvgPool1d(2) as one stride-2 convolution")
                self.done_early[pool] = _conv_then_pool(*args, **kwargs)
                return self.done_early[pool]  # the pool is its only user
        if target in (aten.conv1d.default, aten.convolution.default) and self._winograd(target, args, kwargs):
            self.applied.add("3-tap 1-D convolution as Winograd F(4,3): half the multiply-adds")
            bias = args[2] if len(args) > 2 else None
            padding = args[4] if len(args) > 4 else (0,)
            return _conv1d_winograd(args[0], args[1], bias, padding[0])
        mine = self.constants.get(self.node.name, {})
        if self.node.name in self.folds:
            self.applied.add(LINEAR_FOLD)
            source, layout = self.folds[self.node.name]
            x = self.env[source]
            for op in layout:   # the same moves of rows, now shorter ones
                if op.target in (aten.reshape.default, aten.view.default):   # x's strides may differ
                    x = aten.reshape.default(x, [*op.args[1][:-1], x.shape[-1]])
                else:
                    x = op.target(x, *op.args[1:], **op.kwargs)
            return aten.linear.default(x, *mine["folded"])
        if self.node.name in self.linear_slices:
            self.applied.add("one-row Linear as a matrix-vector product over packed weights")
            group, first, width = self.linear_slices[self.node.name]
            if group not in self.group_outputs:   # the group's first Linear computes them all
                self.group_outputs[group] = _linear_one_row(args[0], self.constants[group]["packed"])
            y = self.group_outputs[group][..., first:first + width]
            bias = args[2] if len(args) > 2 else None
            return y if bias is None else y + bias
        if "dft" in mine:
            self.applied.add("rfft as a four-step DFT: two small matmuls")
            return _rfft_four_step(args[0], *mine["dft"])
        if target in RANDOM_OPS:
            self.applied.add("random draw as an input")
            return next(self.noise)
        if target in REWRITES:
            why, replacement, applies = REWRITES[target]
            if applies is None or applies(args):
                self.applied.add(why)
                used = any(u.args[1] == 0 and u.users for u in self.node.users if u.target is operator.getitem)
                token = _SEQUENCE_USED.set(used)
                weights_token = _W_HH_T.set(mine)
                try:
                    return replacement(*args, **kwargs)
                finally:
                    _SEQUENCE_USED.reset(token)
                    _W_HH_T.reset(weights_token)
        return super().call_function(target, args, kwargs)


    @staticmethod
    def _winograd(target, args, kwargs) -> bool:
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


class _RewrittenModel(torch.nn.Module):
    def __init__(self, graph_module, n_inputs):
        super().__init__()
        self.graph_module = graph_module
        self.n_inputs = n_inputs
        self.applied: set[str] = set()
        # weights laid out once here, from the stored ones, and exported as constants in that
        # layout (laid out inside the graph, IREE folds the transpose back into the product)
        self.laid_out: dict[str, dict] = {}   # node name -> {key: buffer name, or a tuple of them}
        # one-row Linears of the same input (a VAE's mean and variance, several heads) share one
        # packed weight and one product: one pass over the input, one dispatch
        self.linear_slices: dict[str, tuple[str, int, int]] = {}
        # Linears folded into the narrower Linear before them: computed from that one's input
        self.folds: dict[str, tuple[torch.fx.Node, list[torch.fx.Node]]] = {}
        for node in graph_module.graph.nodes:
            if found := linear_fold_source(node):
                first, layout = found
                self._store(node.name, "folded", folded_linear(*self._linear_weights(first), *self._linear_weights(node)))
                self.folds[node.name] = (first.args[0], layout)
        groups: dict[torch.fx.Node, list] = {}
        for node in graph_module.graph.nodes:
            if _is_one_row_linear(node) and node.name not in self.folds:
                groups.setdefault(node.args[0], []).append(node)
        for members in groups.values():
            weights = [self._weight(m.args[1].target) for m in members]
            self._store(members[0].name, "packed", pack_one_row_weight(torch.cat(weights)))
            first = 0
            for member, weight in zip(members, weights):
                self.linear_slices[member.name] = (members[0].name, first, weight.shape[0])
                first += weight.shape[0]
        for node in graph_module.graph.nodes:
            for position, target in _stored_w_hh(node).items():   # key: the weight's position
                self._store(node.name, position, self._weight(target).detach().t().contiguous())
            if _is_four_step_rfft(node):
                self._store(node.name, "dft", dft_matrices(*_rfft_length_and_scale(node)))

    def _weight(self, target: str) -> torch.Tensor:
        return operator.attrgetter(target)(self.graph_module)

    def _linear_weights(self, linear: torch.fx.Node) -> tuple[torch.Tensor, torch.Tensor | None]:
        bias = linear.args[2] if len(linear.args) > 2 else None
        return self._weight(linear.args[1].target), None if bias is None else self._weight(bias.target)

    def _store(self, node: str, key, value: torch.Tensor | tuple) -> None:
        names = []
        for tensor in value if isinstance(value, tuple) else (value,):
            names.append(f"laid_out_{len(self._buffers)}")
            self.register_buffer(names[-1], tensor)
        self.laid_out.setdefault(node, {})[key] = tuple(names) if isinstance(value, tuple) else names[0]

    def forward(self, *inputs):
        constants = {node: {key: tuple(getattr(self, n) for n in name) if isinstance(name, tuple)
                            else getattr(self, name) for key, name in entries.items()}
                     for node, entries in self.laid_out.items()}
        rewriter = _Rewriter(self.graph_module, inputs[self.n_inputs:], constants, self.linear_slices, self.folds)
        result = rewriter.run(*inputs[:self.n_inputs])
        self.applied |= rewriter.applied
        return result


def needs_rewrite(program: torch.export.ExportedProgram) -> bool:
    if any(_is_one_row_linear(n) or _is_four_step_rfft(n) or linear_fold_source(n) for n in program.module().graph.nodes):
        return True
    for node in program.graph.nodes:
        if node.op == "call_function" and (node.target in RANDOM_OPS or node.target in REWRITES):
            why, _, applies = REWRITES.get(node.target, (None, None, None))
            if applies is None or applies([a.meta.get("val") if isinstance(a, torch.fx.Node) else a for a in node.args]):
                return True
    return False


def noise_inputs(program: torch.export.ExportedProgram) -> list[NoiseInput]:
    return [NoiseInput(list(node.meta["val"].shape), RANDOM_OPS[node.target])
            for node in program.graph.nodes if node.op == "call_function" and node.target in RANDOM_OPS]


def draw_noise(noise: list[NoiseInput], seed: int) -> list[torch.Tensor]:
    """The draws PyTorch makes when the model runs right after torch.manual_seed(seed)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n.shape, generator=generator) if n.distribution == "normal"
            else torch.rand(n.shape, generator=generator) for n in noise]


def apply(program: torch.export.ExportedProgram, example: torch.Tensor, unroll_loops: bool = False):
    """Returns (program, applied rewrite names, noise inputs). A no-op for most models."""
    if not needs_rewrite(program):
        return program, [], []
    noise = noise_inputs(program)
    wrapper = _RewrittenModel(program.module(), 1)
    placeholders = tuple(torch.zeros(n.shape) for n in noise)
    token = _UNROLL_LOOPS.set(unroll_loops)
    try:
        with fx_traceback.preserve_node_meta():
            rewritten = torch.export.export(wrapper, (example, *placeholders))
    finally:
        _UNROLL_LOOPS.reset(token)
    return rewritten, sorted(wrapper.applied), noise
