"""pipeline/lowerable.py: the ops torch-mlir has no lowering for (the functional copies of views, the
view scatters, uninitialised tensors, integer fmod, resize, nonzero_static) decomposed into ops it
lowers: after IREE, they match PyTorch. One model for all: one compile (without the table, each
op fails in iree-compile)."""
from .cases import assert_compiles_and_matches_on_iree, write_model

OPS = ("torch.nn.Identity()",
       "lambda m, x: torch.cat([t.reshape(-1).float() for t in ["
       "torch.permute_copy(x, (1, 0)), torch.ops.aten.view_copy(x, [8, 6]), torch.narrow_copy(x, 1, 2, 3), "
       "*torch.unbind_copy(x, 1), torch.as_strided_copy(x, (3, 4), (5, 2), 3), "
       "torch.as_strided_scatter(x, x[:3, :4] * 10, (3, 4), (5, 2), 3), "
       "torch.diagonal_scatter(x, x[1:5, 0] * 7, -2), torch.diagonal_scatter(x, x[0, 1:6] * 3, 3), "
       "torch.fft.fftshift(x), torch.fft.ifftshift(x, 1), torch.nonzero_static(torch.relu(x), size=30), "
       "x.new_zeros(3, 0), torch.block_diag(x[:2, :3], x[2:, 3:]), "
       "torch.nn.functional.hinge_embedding_loss(x, torch.sign(x), reduction='none'), "
       "torch.ops.aten.resize(x.clone(), [4, 5])]])",
       "torch.randn(6, 8)")


def test_decomposed_ops_compile_and_match_on_iree(tmp_path):
    assert_compiles_and_matches_on_iree(write_model(tmp_path, "ops", OPS), tmp_path / "out")
