"""reductions.py (distances, medians, mode, histc, logcumsumexp, index_reduce, put, matrix_power (linalg.py's),
segment_reduce, embedding_bag, float to byte), pooling.py's avg_pool3d and pipeline/lowerable.py (the ops torch-mlir has no lowering for, decomposed: the
functional copies of views, view scatters, uninitialised tensors, integer fmod, nonzero_static),
after IREE. One model for all, one compile, one op of each kind (the suite's time budget; the
IREE run is compared with PyTorch itself)."""
from .cases import assert_compiles_and_matches_on_iree, write_model

_REDUCTIONS = (
    "torch.cdist(x, x[:3]), torch.pdist(x[:4]), torch.kthvalue(x, 3, 0)[0], *torch.mode(x.round(), 1), "
    "torch.histc(x, 10, -2, 2), "
    "torch.logcumsumexp(x * 50, 1), x.index_reduce(0, torch.tensor([0, 2, 0]), x[:3] * 2, 'amax'), "
    "x.put(torch.tensor([1, -3, 5]), x[0, :3], accumulate=True), torch.linalg.matrix_power(x[:4, :4], 3), "
    "torch.segment_reduce(x, 'mean', lengths=torch.tensor([2, 0, 3, 1]), initial=0.5), "
    "torch.nn.functional.embedding_bag(torch.tensor([5, 1, 0, 5, 2]), x, torch.tensor([0, 3]), mode='max'), "
    "(x * 40).byte(), torch.nn.functional.avg_pool3d(x.reshape(1, 2, 3, 2, 4), 2, 1, 1, count_include_pad=False)")
_LOWERABLE = (
    "torch.permute_copy(x, (1, 0)), torch.as_strided_scatter(x, x[:3, :4] * 10, (3, 4), (5, 2), 3), "
    "torch.diagonal_scatter(x, x[1:5, 0] * 7, -2), torch.fft.fftshift(x), "
    "torch.nonzero_static(torch.relu(x), size=30), x.new_zeros(3, 0)")
CASE = ("torch.nn.Identity()", f"lambda m, x: torch.cat([t.reshape(-1).float() for t in [{_REDUCTIONS}, {_LOWERABLE}]])",
        "torch.randn(6, 8)")


def test_reductions_and_lowerable_ops_compile_and_match_on_iree(tmp_path):
    assert_compiles_and_matches_on_iree(write_model(tmp_path, "ops", CASE), tmp_path / "out")
