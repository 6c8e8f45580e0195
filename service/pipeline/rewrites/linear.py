"""Linear layers: chains folded into one Linear, and one-row Linears over packed weights.

- a Linear fed (through layout ops that keep rows whole: transposes of leading dims, reshapes
  keeping the last) by another Linear with fewer inputs than outputs is one Linear of the first
  one's input: W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2), the product computed once at
  export in float64. An embedding 8 -> 512 feeding attention's 512 -> 1536 projection then costs
  8 multiply-adds per output, not 512 (transformer_block: half its arithmetic). The first Linear
  still runs if anything else reads it (the residual).
- a Linear layer applied to one row (an MLP over the block, an encoder's projection) is a
  matrix-vector product bound by memory; IREE's default keeps one accumulator per 16 outputs and
  stalls on every multiply-add. Its weight is packed in blocks of GEMV_BLOCK outputs (computed
  once at load) and tuning_spec.py gives that product a config with a whole block of
  accumulators (single_mm: 75 -> 48 us). Linears of the same row share one packed weight.
"""
from __future__ import annotations

import torch

from ..tuning_spec import GEMV_BLOCK
from .core import Rule

aten = torch.ops.aten
LINEAR_FOLD = "two Linears in a row as one, where that is fewer multiply-adds"
# ops that move whole rows of the last dimension around without touching their contents
ROW_LAYOUT_OPS = (aten.transpose.int, aten.permute.default, aten.reshape.default, aten.view.default,
                  aten.unsqueeze.default, aten.squeeze.dim, aten.contiguous.default, aten.clone.default)


def _is_stored(arg) -> bool:
    return isinstance(arg, torch.fx.Node) and arg.op == "get_attr"


def _linear_by_stored_matrix(node: torch.fx.Node) -> bool:
    """aten.linear (positional arguments) by a stored float32 matrix."""
    if node.op != "call_function" or node.target != aten.linear.default or node.kwargs or not _is_stored(node.args[1]):
        return False
    weight = node.args[1].meta.get("val")
    return weight is not None and weight.dim() == 2 and weight.dtype == torch.float32


def _stored_linear(node: torch.fx.Node) -> bool:
    """aten.linear by a stored float32 matrix and a stored bias, or none."""
    bias = node.args[2] if len(node.args) > 2 else None
    return _linear_by_stored_matrix(node) and (bias is None or _is_stored(bias))


def _linear_weights(layout, linear: torch.fx.Node) -> tuple[torch.Tensor, torch.Tensor | None]:
    bias = linear.args[2] if len(linear.args) > 2 else None
    return layout.weight(linear.args[1].target), None if bias is None else layout.weight(bias.target)


# ---- two Linears in a row as one ------------------------------------------------------------

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


class FoldLinears(Rule):
    """The second of two Linears in a row, computed from the first one's input."""
    why = LINEAR_FOLD
    needs_graph = "module"   # stored weights are get_attr nodes there

    def needs(self, node):
        return bool(linear_fold_source(node))

    def prepare(self, graph_module, layout):
        """Folded weights stored per second Linear; returns Linear -> (the first Linear's input,
        the layout ops between)."""
        folds = {}
        for node in graph_module.graph.nodes:
            if found := linear_fold_source(node):
                first, chain = found
                layout.store(node.name, "folded", folded_linear(*_linear_weights(layout, first),
                                                                *_linear_weights(layout, node)))
                folds[node.name] = (first.args[0], chain)
        return folds

    def matches(self, call):
        return call.node.name in call.state(self)

    def replace(self, call):
        source, chain = call.state(self)[call.node.name]
        x = call.value(source)
        for op in chain:   # the same moves of rows, now shorter ones
            if op.target in (aten.reshape.default, aten.view.default):   # x's strides may differ
                x = aten.reshape.default(x, [*op.args[1][:-1], x.shape[-1]])
            else:
                x = op.target(x, *op.args[1:], **op.kwargs)
        return aten.linear.default(x, *call.constants["folded"])


# ---- one-row Linears over packed weights ----------------------------------------------------

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


def _is_one_row_linear(node: torch.fx.Node) -> bool:
    """A Linear of one input row by a stored weight, with enough outputs to fill blocks."""
    if not _linear_by_stored_matrix(node):
        return False
    x_val = node.args[0].meta.get("val")
    if x_val is None or x_val.dim() < 1 or x_val.numel() != x_val.shape[-1] or x_val.dtype != torch.float32:
        return False
    out_features = node.args[1].meta["val"].shape[0]
    return out_features % GEMV_BLOCK == 0 or out_features >= 4 * GEMV_BLOCK


class OneRowLinear(Rule):
    """One-row Linears of the same input (a VAE's mean and variance, several heads) share one
    packed weight and one product: one pass over the input, one dispatch."""
    why = "one-row Linear as a matrix-vector product over packed weights"
    needs_graph = "module"   # stored weights are get_attr nodes there

    def needs(self, node):
        return _is_one_row_linear(node)

    def prepare(self, graph_module, layout):
        """The packed weight of each group, stored under its first Linear; returns
        Linear -> (its group's first Linear, its first output, its outputs)."""
        groups: dict[torch.fx.Node, list] = {}
        for node in graph_module.graph.nodes:   # a Linear FoldLinears takes is not packed
            if _is_one_row_linear(node) and not linear_fold_source(node):
                groups.setdefault(node.args[0], []).append(node)
        slices = {}
        for members in groups.values():
            weights = [layout.weight(m.args[1].target) for m in members]
            layout.store(members[0].name, "packed", pack_one_row_weight(torch.cat(weights)))
            first = 0
            for member, weight in zip(members, weights):
                slices[member.name] = (members[0].name, first, weight.shape[0])
                first += weight.shape[0]
        return slices

    def matches(self, call):
        return call.node.name in call.state(self)

    def replace(self, call):
        group, first, width = call.state(self)[call.node.name]
        outputs = call.scratch(self)   # group -> all its outputs, computed by its first Linear
        if group not in outputs:
            outputs[group] = _linear_one_row(call.args[0], call.constants_of(group)["packed"])
        y = outputs[group][..., first:first + width]
        bias = call.args[2] if len(call.args) > 2 else None
        return y if bias is None else y + bias


# FoldLinears first: its prepare() stores before OneRowLinear's (the buffers' numbering)
RULES = [FoldLinears(), OneRowLinear()]
