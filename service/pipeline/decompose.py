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
"""
from __future__ import annotations

from contextlib import contextmanager


def decompose(program):
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
    with _linalg_checks_without_effect():
        decomposed = program.run_decompositions(table)
    graph = decomposed.graph_module.graph
    for node in [n for n in graph.nodes if n.target == aten._linalg_check_errors.default and not n.users]:
        graph.erase_node(node)
    decomposed.graph_module.recompile()
    return decomposed


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
