"""linalg.py: factorizations and solves IREE has no lowering for, written out for the matrix size.

One batched case for the four families (one compile): Cholesky, an LU solve (with pivoting),
QR's R (Householder) and the singular values (Jacobi) of well-conditioned 2 x 2 matrices (small:
the graphs grow fast with the size, and so does the compile time)."""
from .cases import case_tests

CASES = {
    "factorizations": (
        "torch.nn.Identity()",
        "lambda m, x: torch.cat([torch.linalg.cholesky(x @ x.mT + torch.diag_embed(x[..., 0] ** 2 + 1)).flatten(), "
        "torch.linalg.solve(x, x[..., 0] - 1).flatten(), torch.linalg.qr(x)[1].flatten(), "
        "torch.linalg.svdvals(x).flatten()])",
        "torch.randn(3, 2, 2) + 2 * torch.eye(2)"),
}

test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)


def test_linalg_error_checks_leave_no_effect_token():
    """linalg.inv decomposes with an error check PyTorch marks as an effect: IREE's importer
    rejects the token input that would add."""
    import torch

    from service.pipeline.decompose import decompose

    class Inverse(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.inv(x)

    program = decompose(torch.export.export(Inverse(), (torch.randn(3, 3),)))
    kinds = {spec.kind.name for spec in (*program.graph_signature.input_specs, *program.graph_signature.output_specs)}
    assert "TOKEN" not in kinds
