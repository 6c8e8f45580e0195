"""The exported graph decomposed into core ATen ops, the ops IREE's importer lowers.

torch.export keeps many ops whole that IREE has no lowering for (`addmv`, `diff`, `cross`,
`kron`, `rsub`, `true_divide`, `take_along_dim`, `sinc`, `xlogy`, `nansum`, `einsum`'s
`sum.dim_IntList`, ...): iree-turbine decomposes only a short list, and only when it exports an
nn.Module itself, not the ExportedProgram bela-iree hands it after the rewrites. Here PyTorch's
core ATen table (torch.export.default_decompositions) and turbine's are applied; the rewrites
have already run on the ops as the user wrote them. A few ops IREE lowers better whole are kept:
`fft_rfft` (IREE's own FFT; decomposed it is `_fft_r2c`, which IREE cannot lower) and nearest
upsampling (decomposed into index arithmetic, IREE computed wrong indices: error 1.9). Ops
torch-mlir has no lowering for, as written or as PyTorch's table leaves them (`permute_copy`,
`diagonal_scatter`, `empty_strided`, ...), are decomposed by our own entries (`lowerable.py`).

linalg.inv, solve, cholesky, lu_factor, ldl_factor (and tensorinv, tensorsolve) decompose into
their `_ex` form and `_linalg_check_errors`, which raises on a singular matrix. PyTorch marks that
check as an effect, so the program gains an effect token, an input kind IREE's importer rejects
("InputSpec not of a known kind: token"); a compiled model cannot raise anyway (it returns what
the `_ex` form computes, inf or NaN), so the check is traced as a plain op and left out.

A graph of core ATen ops only (and `reshape`), none of them in turbine's or our own table and none
in place, is left as it is: decomposing it would change nothing IREE sees, and run_decompositions
retraces the whole graph (0.15-0.3 s for basic_mlp, a quarter of a rebuild; issue 23 item 6).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager


def decompose(program):
    import torch

    if already_core(program):
        return program
    aten = torch.ops.aten
    with _linalg_checks_without_effect():
        decomposed = program.run_decompositions(decomposition_table())
    graph = decomposed.graph_module.graph
    for node in [n for n in graph.nodes if n.target == aten._linalg_check_errors.default and not n.users]:
        graph.erase_node(node)
    decomposed.graph_module.recompile()
    return decomposed


def decomposition_table():
    """PyTorch's core ATen table with turbine's entries, ours (lowerable.py), and the kept ops out."""
    import torch
    from iree.turbine.aot.decompositions import current_aot_decompositions

    from . import lowerable

    aten = torch.ops.aten
    table = torch.export.default_decompositions()
    for op, function in current_aot_decompositions().items():
        table[op] = function
    kept = [aten.fft_rfft.default, *(getattr(aten, f"upsample_nearest{n}d").default for n in (1, 2, 3)),
            *(getattr(aten, f"upsample_nearest{n}d").vec for n in (1, 2, 3))]
    for op in kept:
        table.pop(op, None)
    table.update(lowerable.TABLE)
    return table


@functools.cache
def _decomposed_ops() -> frozenset:
    """The ops the table rewrites, listed once per process (listing them all costs ~0.1 s)."""
    return frozenset(decomposition_table().keys())


def already_core(program) -> bool:
    """Every op of the graph is one IREE's importer takes as it is: a functional core ATen op that
    no table entry rewrites (or `reshape`, which torch-mlir lowers whole). Anything else (a
    composite op, a higher-order op, an in-place update) goes through run_decompositions."""
    import torch

    decomposed = _decomposed_ops()
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        op = node.target
        if op is torch.ops.aten.reshape.default:
            continue
        if (not isinstance(op, torch._ops.OpOverload) or torch.Tag.core not in op.tags
                or op._schema.is_mutable or op in decomposed):
            return False
    return True


@contextmanager
def _linalg_checks_without_effect():
    import torch
    holder = torch._library.simple_registry.singleton.find("aten::_linalg_check_errors").effect
    effect = holder.effect
    holder.register(None)
    try:
        yield
    finally:
        holder.register(effect)
