"""Small rewrites, one op each: dropout, detach_, attention, random draws.

- dropout in inference (`nn.Dropout1d/2d`, `feature_dropout`, `alpha_dropout` with train=False):
  IREE has no lowering for the feature forms; in inference every dropout is the identity.
- `detach_` (torch.export adds it to tensors a forward() creates, e.g. `torch.tensor([0])`, when
  the model has parameters): no lowering in IREE; without autograd it is the identity.
- `scaled_dot_product_attention` (nn.MultiheadAttention, TransformerEncoderLayer): IREE's fused
  attention kernel is slow on CPU; written out as softmax(q k^T * scale) v.
- random sampling (`randn`, `rand` and their `_like` forms): the generator does not compile
  for every target and cannot be seeded from outside; each draw becomes an extra input of the
  compiled function, filled by the caller (the runtime draws it, tests pass PyTorch's draws).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .core import OpRule

aten = torch.ops.aten


def _identity(x, *_):
    return x


class DropoutIdentity(OpRule):
    why = "dropout is the identity in inference"
    targets = (aten.dropout.default, aten.feature_dropout.default, aten.alpha_dropout.default,
               aten.feature_alpha_dropout.default)

    def applies(self, target, args):
        return len(args) > 2 and args[2] is False   # train=False

    def replace(self, call):
        return _identity(*call.args, **call.kwargs)


class DetachIdentity(OpRule):
    why = "detach is the identity in inference"
    targets = (aten.detach_.default,)

    def replace(self, call):
        return _identity(*call.args, **call.kwargs)


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


class AttentionAsMatmuls(OpRule):
    why = "attention as two matmuls and a softmax"
    targets = (aten.scaled_dot_product_attention.default,)

    def applies(self, target, args):
        return len(args) < 5 or not args[4]  # no dropout inside attention (inference)

    def replace(self, call):
        return _attention(*call.args, **call.kwargs)


# ---- random draws as inputs -----------------------------------------------------------------

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


def noise_inputs(program: torch.export.ExportedProgram) -> list[NoiseInput]:
    return [NoiseInput(list(node.meta["val"].shape), RANDOM_OPS[node.target])
            for node in program.graph.nodes if node.op == "call_function" and node.target in RANDOM_OPS]


def draw_noise(noise: list[NoiseInput], seed: int) -> list[torch.Tensor]:
    """The draws PyTorch makes when the model runs right after torch.manual_seed(seed)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n.shape, generator=generator) if n.distribution == "normal"
            else torch.rand(n.shape, generator=generator) for n in noise]


class RandomAsInput(OpRule):
    """Each draw, in the graph's order, is the next of the inputs inputs() added."""
    why = "random draw as an input"
    targets = tuple(RANDOM_OPS)

    def inputs(self, program):
        return noise_inputs(program)

    def replace(self, call):
        return call.next_input(self)


RULES = [RandomAsInput(), DropoutIdentity(), DetachIdentity(), AttentionAsMatmuls()]
