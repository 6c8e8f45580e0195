"""reductions.py (distances, medians, mode, histc, logcumsumexp, index_reduce, put, matrix_power,
float to byte) and pipeline/lowerable.py (the ops torch-mlir has no lowering for, decomposed: the
functional copies of views, view scatters, uninitialised tensors, integer fmod, resize,
nonzero_static), in PyTorch and after IREE. One model for all: one compile."""
from .cases import case_tests

_REDUCTIONS = (
    "torch.dist(x, x.flip(0)), torch.dist(x, x.flip(0), 3), torch.cdist(x, x[:3]), torch.cdist(x, x[:3], p=1), "
    "torch.pdist(x), torch.median(x), torch.median(x, 1)[0], torch.nanmedian(x), torch.kthvalue(x, 3, 0)[0], "
    "*torch.mode(x.round(), 1), torch.histc(x, 10, -2, 2), torch.angle(x), torch.logcumsumexp(x * 50, 1), "
    "x.index_reduce(0, torch.tensor([0, 2, 0]), x[:3] * 2, 'amax'), "
    "x.put(torch.tensor([1, -3, 5]), x[0, :3], accumulate=True), torch.linalg.matrix_power(x[:4, :4], 3), "
    "(x * 40).byte()")
_LOWERABLE = (
    "torch.permute_copy(x, (1, 0)), torch.ops.aten.view_copy(x, [8, 6]), torch.narrow_copy(x, 1, 2, 3), "
    "*torch.unbind_copy(x, 1), torch.as_strided_copy(x, (3, 4), (5, 2), 3), "
    "torch.as_strided_scatter(x, x[:3, :4] * 10, (3, 4), (5, 2), 3), "
    "torch.diagonal_scatter(x, x[1:5, 0] * 7, -2), torch.diagonal_scatter(x, x[0, 1:6] * 3, 3), "
    "torch.fft.fftshift(x), torch.fft.ifftshift(x, 1), torch.nonzero_static(torch.relu(x), size=30), "
    "x.new_zeros(3, 0), torch.block_diag(x[:2, :3], x[2:, 3:]), "
    "torch.nn.functional.hinge_embedding_loss(x, torch.sign(x), reduction='none'), "
    "torch.ops.aten.resize(x.clone(), [4, 5])")

CASES = {
    "reductions_and_lowerable_ops": (
        "torch.nn.Identity()",
        f"lambda m, x: torch.cat([t.reshape(-1).float() for t in [{_REDUCTIONS}, {_LOWERABLE}]])",
        "torch.randn(6, 8)"),
}

test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)
