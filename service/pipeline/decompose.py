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
"""
from __future__ import annotations


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
    return program.run_decompositions(table)
