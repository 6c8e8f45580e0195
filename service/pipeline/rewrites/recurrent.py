"""Recurrent layers (nn.RNN, nn.LSTM, nn.GRU) as time loops, and their cells (nn.RNNCell,
nn.LSTMCell, nn.GRUCell, often stepped in the user's own Python loop) as plain math.

IREE cannot lower `aten.rnn_tanh`, `lstm`, `gru`; the stock decomposition unrolls time (a
1024-step RNN: 1.5 MB of MLIR, 72 s of compile). A layer of up to recurrent_kernel.MAX_HIDDEN
units becomes one dispatch of our own (recurrent_kernel.py: the time loop inside one kernel,
lstm_amp 0.18 -> 0.026 ms per block). Wider ones: time stays a loop (`torch.while_loop` ->
scf.while), so it compiles in ~1 s; sequences of at most UNROLL_MAX_STEPS steps (a Bela block)
are unrolled, which runs faster and compiles in seconds. EmitC cannot express that loop (its sync wrapper would
have to yield inside it: "callee must be an import for yieldable call", after which iree-compile
hangs), so for `--format emitc` the same cell is unrolled over time instead (`unroll_loops`):
slower to compile, same math.

Every step's input projection is computed for the whole sequence by one matmul before the loop,
and the loop multiplies by a w_hh transposed once at export (simple_rnn: 10.7 -> 6.4 ms).
"""
from __future__ import annotations

import operator

import torch
from torch._higher_order_ops.while_loop import while_loop

from . import recurrent_kernel
from .core import OpRule
from .recurrent_cells import CELLS

aten = torch.ops.aten
# Sequences up to a Bela block run faster unrolled (no per-step loop overhead): lstm_amp's 128
# steps 0.26 -> 0.18 ms per call on host, for 8 s of compile instead of 2; longer ones stay a loop
UNROLL_MAX_STEPS = 128
RECURRENT_OPS = (aten.rnn_tanh.input, aten.rnn_relu.input, aten.lstm.input, aten.gru.input)
# one step of a cell: IREE has no lowering for these either (and torch.export keeps them whole)
CELL_OPS = (aten.rnn_tanh_cell.default, aten.rnn_relu_cell.default, aten.lstm_cell.default, aten.gru_cell.default)


def _run_direction(cell, seq, state, weights, reverse, keep_outputs=True, w_hh_t=None, unroll=False):
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
    # stored transposed (see RecurrentAsLoop.lay_out): transposed here, IREE would fold the
    # transpose back into the product and reduce across vector lanes on every step
    weights = (w_hh.t().contiguous() if w_hh_t is None else w_hh_t, b_hh)
    if recurrent_kernel.fits(cell, seq, state[0].shape[-1]):
        out, *state = recurrent_kernel.run(cell, reverse, seq, *weights, state)
        return out, tuple(state)
    cell = CELLS[cell]
    if unroll or steps <= UNROLL_MAX_STEPS:
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


def _recurrent(cell, n_state, sequence_used, w_hh_t, unroll):
    """The replacement of a recurrent op, with the op's own arguments. sequence_used: something
    reads the layer's output sequence; w_hh_t: position in the parameter list -> that w_hh,
    transposed at export."""
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
                keep = layer < num_layers - 1 or sequence_used
                out, state = _run_direction(cell, seq, state, tuple(w), reverse=direction == 1, keep_outputs=keep,
                                            w_hh_t=w_hh_t.get(index * per_layer + 1), unroll=unroll)
                outputs.append(out)
                for k in range(n_state):
                    finals[k].append(state[k])
            seq = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
        output = seq.transpose(0, 1) if batch_first else seq
        return (output, *(torch.stack(f) for f in finals))
    return rewrite


def _stored_w_hh(node: torch.fx.Node) -> dict[int, str]:
    """A recurrent layer's w_hh parameters that are stored weights: position -> attribute name."""
    if node.op != "call_function" or node.target not in RECURRENT_OPS:
        return {}
    params, has_biases = node.args[2], node.args[3]
    per_layer = 4 if has_biases else 2
    return {i: params[i].target for i in range(1, len(params), per_layer)
            if isinstance(params[i], torch.fx.Node) and params[i].op == "get_attr"}


class RecurrentAsLoop(OpRule):
    """Every recurrent op, each with its cell: (cell, how many state tensors it carries)."""
    why = "recurrent layer as a time loop (unrolled if short)"
    cells = {aten.rnn_tanh.input: ("rnn_tanh", 1), aten.rnn_relu.input: ("rnn_relu", 1),
             aten.lstm.input: ("lstm", 2), aten.gru.input: ("gru", 1)}
    targets = RECURRENT_OPS

    def lay_out(self, node, layout):
        """Each stored w_hh transposed, keyed by its position in the layer's parameter list."""
        return {position: layout.weight(target).detach().t().contiguous()
                for position, target in _stored_w_hh(node).items()}

    def replace(self, call):
        cell, n_state = self.cells[call.target]
        # the output sequence is element 0 of the op's result: is it read by anything?
        used = any(u.args[1] == 0 and u.users for u in call.node.users if u.target is operator.getitem)
        return _recurrent(cell, n_state, used, call.constants, call.unroll_loops)(*call.args, **call.kwargs)


class CellAsMath(OpRule):
    """One step of a cell, the same cell functions as the layers' loops. The weights are
    transposed in the graph, not laid out once: a cell stepped in a Python loop is one node per
    step, and laying out per node would store one copy of the weights per step."""
    why = "recurrent cell as matmuls and activations"
    cells = {aten.rnn_tanh_cell.default: CELLS["rnn_tanh"], aten.rnn_relu_cell.default: CELLS["rnn_relu"],
             aten.lstm_cell.default: CELLS["lstm"], aten.gru_cell.default: CELLS["gru"]}
    targets = CELL_OPS

    def replace(self, call):
        x, hx, w_ih, w_hh, b_ih, b_hh = (list(call.args) + [None, None])[:6]
        b_ih, b_hh = call.kwargs.get("b_ih", b_ih), call.kwargs.get("b_hh", b_hh)
        xw = x @ w_ih.t() + (b_ih if b_ih is not None else 0)
        b_hh = b_hh if b_hh is not None else w_hh.new_zeros(w_hh.shape[0])
        state = tuple(hx) if isinstance(hx, (list, tuple)) else (hx,)
        result = self.cells[call.target](xw, state, w_hh.t(), b_hh)
        return result if call.target is aten.lstm_cell.default else result[0]


RULES = [RecurrentAsLoop(), CellAsMath()]
