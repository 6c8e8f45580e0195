"""Linear algebra IREE has no lowering for, as float32 arithmetic unrolled over the matrix size.

A compiled model's matrices have static sizes, and the ones models (and OpInfo's samples) factor
are small: so each decomposition is written out step by step for that size (linalg_math.py), with
pivot choices as masks. Cholesky (and its solves and inverse), triangular solves, LU with partial
pivoting (and the solves, inverses and determinants made from it), Householder QR (geqrf, orgqr,
ormqr) up to UNROLL_MAX_N; singular values and symmetric eigenvalues by Jacobi sweeps (svdvals,
nuclear norm, cond, matrix_rank, pinv, eigvalsh) up to JACOBI_MAX_N, whose graph grows as n^2 per
sweep. Larger matrices fail at export with an error naming the op. Each follows LAPACK's
conventions (pivots, reflector signs, the triangle read), so its outputs are PyTorch's; eigen- and
singular vectors are not returned by any rule (their signs are LAPACK's arbitrary choice), only
what they determine uniquely (pinv). And torch.eye, which iree-compile fails on, as a comparison.
"""
from __future__ import annotations

import torch

from ...errors import ExportError
from . import linalg_math as la
from .core import OpRule, Rule

aten = torch.ops.aten
UNROLL_MAX_N = 16    # LU, Cholesky, QR, triangular solves: O(n) steps of whole-matrix arithmetic
JACOBI_MAX_N = 8     # Jacobi: n (n - 1) / 2 rotations per sweep
EPS = torch.finfo(torch.float32).eps


def _check_size(op: str, n: int, limit: int) -> None:
    if n > limit:
        raise ExportError(f"export failed: {op} of a {n} x {n} matrix: bela-iree writes {op} out step by step "
                          f"for matrices up to {limit} x {limit} (IREE has no lowering for it)",
                          hint="factor smaller matrices, or move this computation out of forward() "
                               "(precompute it, or store its result as a buffer)")


def _cholesky(a, upper=False):
    if upper:   # U^T U = A from A's upper triangle
        lower, info = la.cholesky_lower(la.transpose(a))
        return la.transpose(lower), info
    return la.cholesky_lower(a)


def _cholesky_inverse(factor, upper=False):
    n = factor.shape[-1]
    inverse = la.solve_triangular(factor, la.eye(n, n, factor).expand(factor.shape), upper=upper)
    return inverse @ la.transpose(inverse) if upper else la.transpose(inverse) @ inverse


def _cholesky_solve(b, factor, upper=False):
    if upper:
        y = la.solve_triangular(la.transpose(factor), b, upper=False)
        return la.solve_triangular(factor, y, upper=True)
    y = la.solve_triangular(factor, b, upper=False)
    return la.solve_triangular(la.transpose(factor), y, upper=True)


def _triangular_solve(b, a, upper=True, transpose=False, unitriangular=False):
    coefficients = la.transpose(a) if transpose else a
    return la.solve_triangular(coefficients, b, upper=upper != transpose, unit=unitriangular), a.clone()


def _solve_triangular(a, b, *, upper, left=True, unitriangular=False):
    if left:
        return la.solve_triangular(a, b, upper=upper, unit=unitriangular)
    return la.transpose(la.solve_triangular(la.transpose(a), la.transpose(b), upper=not upper, unit=unitriangular))


def _lu_factor_ex(a, *, pivot=True, check_errors=False):
    if not pivot:
        raise ExportError("export failed: LU without pivoting: bela-iree writes out LU with partial pivoting only",
                          hint="use pivot=True (the default)")
    lu, pivots, info = la.lu_factor(a)
    return lu, (pivots + 1).to(torch.int32), info


def _pivots_from_zero(pivots):
    return pivots.to(torch.float32) - 1


def _lu(a, *, pivot=True):
    lu, pivots, _ = _lu_factor_ex(a, pivot=pivot)
    lower, upper = la.unpack_lu(lu)
    return la.permutation(_pivots_from_zero(pivots), a.shape[-2]), lower, upper


def _lu_unpack(lu, pivots, unpack_data=True, unpack_pivots=True):
    lower, upper = la.unpack_lu(lu)
    return la.permutation(_pivots_from_zero(pivots), lu.shape[-2]), lower, upper


def _linalg_lu_solve(lu, pivots, b, *, left=True, adjoint=False):
    if left:
        return la.lu_solve(lu, _pivots_from_zero(pivots), b, adjoint)
    return la.transpose(la.lu_solve(lu, _pivots_from_zero(pivots), la.transpose(b), not adjoint))


def _solve_ex(a, b, *, left=True, check_errors=False):
    vector = b.dim() == 1 or (b.dim() == a.dim() - 1 and b.shape == a.shape[:-1])
    if vector:
        b = b.unsqueeze(-1)
    if not left:   # X A = B: A^T X^T = B^T (a vector b is already the transposed side)
        a = la.transpose(a)
        b = b if vector else la.transpose(b)
    lu, pivots, info = la.lu_factor(a)
    x = la.lu_solve(lu, pivots, b)
    x = x.squeeze(-1) if vector else (x if left else la.transpose(x))
    return x, info


def _inv_ex(a, *, check_errors=False):
    return _solve_ex(a, la.eye(a.shape[-1], a.shape[-1], a).expand(a.shape))


def _matrix_power(a, k):
    """By squaring; a negative power of the inverse; the 0th is the identity (torch.eye's, which
    iree-compile fails on, in linalg_matrix_power's decomposition)."""
    if k < 0:
        _check_size("linalg.matrix_power", a.shape[-1], UNROLL_MAX_N)
        a, k = _inv_ex(a)[0], -k
    result, square = la.eye(a.shape[-1], a.shape[-1], a).expand(a.shape), a
    first = True
    while k:
        if k & 1:
            result, first = (square if first else result @ square), False
        k >>= 1
        if k:
            square = square @ square
    return result


def _logdet(a):
    sign, log_abs = la.slogdet(a)
    return torch.where(sign < 0, float("nan"), log_abs)


def _tensorinv(a, ind=2):
    rows = a.shape[:ind]
    n = a[(0,) * ind].numel() if ind else 1
    _check_size("linalg.tensorinv", n, UNROLL_MAX_N)
    inverse, _ = _inv_ex(a.reshape(n, n))
    return inverse.reshape(*a.shape[ind:], *rows)


def _tensorsolve(a, b, dims=None):
    if dims is not None:
        a = a.movedim(list(dims), list(range(a.dim() - len(dims), a.dim())))
    n = b.numel()
    _check_size("linalg.tensorsolve", n, UNROLL_MAX_N)
    x, _ = _solve_ex(a.reshape(n, n), b.reshape(n))
    return x.reshape(a.shape[b.dim():])


def _qr(a, mode="reduced"):
    m, n = a.shape[-2:]
    k = min(m, n)
    packed, tau = la.householder(a)
    if mode == "complete":
        identity = la.eye(m, m, a).expand(*a.shape[:-2], m, m)
        return la.apply_q(packed[..., :, :k], tau, identity, left=True, transposed=False), torch.triu(packed)
    r = torch.triu(packed[..., :k, :])
    if mode == "r":
        return torch.zeros(0), r
    return la.householder_product(packed[..., :, :k], tau), r


def _svdvals(a, driver=None):
    return la.sort_last(la.singular_values(a), descending=True)


def _eigvalsh(a, uplo="L"):
    return la.sort_last(la.symmetric_eigenvalues(_symmetric(a, lower=uplo.upper() == "L")), descending=False)


def _nuclear_norm(a, ord="nuc", dim=(-2, -1), keepdim=False, *, dtype=None):
    moved = a.movedim(list(dim), [-2, -1])
    total = la.singular_values(moved).sum(-1)
    if keepdim:
        for d in sorted(d % a.dim() for d in dim):
            total = total.unsqueeze(d)
    return total


def _cond(a, p=None):
    if p in (None, 2, -2):
        s = la.singular_values(a)
        largest, smallest = s.amax(-1), s.amin(-1)
        return smallest / largest if p == -2 else largest / smallest
    inverse, _ = _inv_ex(a)
    if p == "nuc":
        return _nuclear_norm(a) * _nuclear_norm(inverse)
    return torch.linalg.matrix_norm(a, p) * torch.linalg.matrix_norm(inverse, p)


def _tolerance(largest, atol, rtol, m, n):
    """max(atol, rtol * largest singular value); rtol defaults to eps * max(m, n), or 0 when atol > 0."""
    atol_value = atol if atol is not None else torch.zeros_like(largest)
    if rtol is None:
        default = EPS * max(m, n)
        rtol = default if atol is None else torch.where(atol_value > 0, 0.0, default)
    return torch.maximum(atol_value, rtol * largest)


def _symmetric(a, lower=True):
    """The symmetric matrix A's lower (or upper) triangle defines: what LAPACK's symmetric routines read."""
    half = torch.tril(a, -1) if lower else torch.triu(a, 1)
    return half + la.transpose(half) + torch.diag_embed(torch.diagonal(a, 0, -2, -1))


def _matrix_rank(a, *, atol=None, rtol=None, hermitian=False):
    s = la.singular_values(_symmetric(a) if hermitian else a)   # of a symmetric matrix: |eigenvalues|
    tolerance = _tolerance(s.amax(-1, keepdim=True), atol, rtol, *a.shape[-2:])
    return torch.where(s > tolerance, 1.0, 0.0).sum(-1).to(torch.int64)


def _pinv(a, *, atol=None, rtol=None, hermitian=False):
    """V diag(1 / s^2) (A V)^T over the singular values s kept (A V = U diag(s))."""
    if hermitian:
        a = _symmetric(a)
    wide = a.shape[-1] > a.shape[-2]
    s, av, v = la.singular_values(a, vectors=True)
    tolerance = _tolerance(s.amax(-1, keepdim=True), atol, rtol, *a.shape[-2:])
    scale = torch.where(s > tolerance, 1 / torch.where(s > 0, s * s, 1.0), 0.0)
    result = (v * scale[..., None, :]) @ la.transpose(av)
    return la.transpose(result) if wide else result


class _Definitions(OpRule):
    """Ops as the functions above: op -> (function, the op's name for errors, the largest matrix size)."""
    definitions: dict = {}

    def __init_subclass__(cls):
        cls.targets = tuple(cls.definitions)

    def applies(self, target, args):
        return bool(args) and getattr(args[0], "dtype", None) == torch.float32

    def replace(self, call):
        function, name, limit = self.definitions[call.target]
        for arg in call.args if limit else ():   # no limit: the function checks the matrix it forms
            if isinstance(arg, torch.Tensor) and arg.dim() >= 2:
                _check_size(name, max(arg.shape[-2:]), limit)
        return function(*call.args, **call.kwargs)


class CholeskyAsSteps(_Definitions):
    why = "Cholesky factorizations, solves and inverses, and triangular solves, written out step by step"
    definitions = {
        aten.cholesky.default: (lambda a, upper=False: _cholesky(a, upper)[0], "cholesky", UNROLL_MAX_N),
        aten.linalg_cholesky.default: (lambda a, *, upper=False: _cholesky(a, upper)[0], "linalg.cholesky",
                                       UNROLL_MAX_N),
        aten.linalg_cholesky_ex.default: (lambda a, *, upper=False, check_errors=False: _cholesky(a, upper),
                                          "linalg.cholesky_ex", UNROLL_MAX_N),
        aten.cholesky_inverse.default: (_cholesky_inverse, "cholesky_inverse", UNROLL_MAX_N),
        aten.cholesky_solve.default: (_cholesky_solve, "cholesky_solve", UNROLL_MAX_N),
        aten.triangular_solve.default: (_triangular_solve, "triangular_solve", UNROLL_MAX_N),
        aten.linalg_solve_triangular.default: (_solve_triangular, "linalg.solve_triangular", UNROLL_MAX_N),
    }


class LuAsSteps(_Definitions):
    why = ("LU with partial pivoting, and the solves, inverses, powers and determinants made from it, written out "
           "step by step")
    definitions = {
        aten.linalg_lu_factor_ex.default: (_lu_factor_ex, "linalg.lu_factor_ex", UNROLL_MAX_N),
        aten.linalg_lu_factor.default: (lambda a, *, pivot=True: _lu_factor_ex(a, pivot=pivot)[:2],
                                        "linalg.lu_factor", UNROLL_MAX_N),
        aten._lu_with_info.default: (lambda a, pivot=True, check_errors=True: _lu_factor_ex(a, pivot=pivot),
                                     "lu", UNROLL_MAX_N),
        aten.linalg_lu.default: (_lu, "linalg.lu", UNROLL_MAX_N),
        aten.lu_unpack.default: (_lu_unpack, "lu_unpack", UNROLL_MAX_N),
        aten.lu_solve.default: (lambda b, lu, pivots: _linalg_lu_solve(lu, pivots, b), "lu_solve", UNROLL_MAX_N),
        aten.linalg_lu_solve.default: (_linalg_lu_solve, "linalg.lu_solve", UNROLL_MAX_N),
        aten.linalg_solve_ex.default: (_solve_ex, "linalg.solve_ex", UNROLL_MAX_N),
        aten.linalg_solve.default: (lambda a, b, *, left=True: _solve_ex(a, b, left=left)[0], "linalg.solve",
                                    UNROLL_MAX_N),
        aten.linalg_inv_ex.default: (_inv_ex, "linalg.inv_ex", UNROLL_MAX_N),
        aten.linalg_inv.default: (lambda a: _inv_ex(a)[0], "linalg.inv", UNROLL_MAX_N),
        aten.linalg_matrix_power.default: (_matrix_power, "linalg.matrix_power", None),
        aten.linalg_slogdet.default: (la.slogdet, "linalg.slogdet", UNROLL_MAX_N),
        aten.logdet.default: (_logdet, "logdet", UNROLL_MAX_N),
        aten.linalg_tensorinv.default: (_tensorinv, "linalg.tensorinv", None),
        aten.linalg_tensorsolve.default: (_tensorsolve, "linalg.tensorsolve", None),
    }


class QrAsHouseholder(_Definitions):
    why = "QR and its reflectors (geqrf, householder_product, ormqr) as Householder steps written out"
    definitions = {
        aten.geqrf.default: (la.householder, "geqrf", UNROLL_MAX_N),
        aten.linalg_qr.default: (_qr, "linalg.qr", UNROLL_MAX_N),
        aten.qr.default: (lambda a, some=True: _qr(a, "reduced" if some else "complete"), "qr", UNROLL_MAX_N),
        aten.linalg_householder_product.default: (la.householder_product, "linalg.householder_product",
                                                  UNROLL_MAX_N),
        aten.ormqr.default: (lambda a, tau, c, left=True, transpose=False: la.apply_q(a, tau, c, left, transpose),
                             "ormqr", UNROLL_MAX_N),
    }


class SpectrumAsJacobi(_Definitions):
    why = "singular values and symmetric eigenvalues (svdvals, nuclear norm, cond, matrix_rank, pinv, " \
          "eigvalsh) by Jacobi sweeps"
    definitions = {
        aten.linalg_svdvals.default: (_svdvals, "linalg.svdvals", JACOBI_MAX_N),
        aten.linalg_eigvalsh.default: (_eigvalsh, "linalg.eigvalsh", JACOBI_MAX_N),
        aten.linalg_matrix_norm.str_ord: (_nuclear_norm, "linalg.matrix_norm(ord='nuc')", JACOBI_MAX_N),
        aten.linalg_cond.default: (_cond, "linalg.cond", JACOBI_MAX_N),
        aten.linalg_matrix_rank.atol_rtol_tensor: (_matrix_rank, "linalg.matrix_rank", JACOBI_MAX_N),
        aten.linalg_pinv.atol_rtol_tensor: (_pinv, "linalg.pinv", JACOBI_MAX_N),
        aten.pinverse.default: (lambda a, rcond=1e-15: _pinv(a, atol=torch.zeros(()), rtol=rcond), "pinverse",
                                JACOBI_MAX_N),
    }

    def applies(self, target, args):
        if target == aten.linalg_matrix_norm.str_ord and (len(args) < 2 or args[1] != "nuc"):
            return False
        return super().applies(target, args)


def _matrix_exp(a, squarings: int = 16):
    """Scaling and squaring: A / 2^s with s from A's largest absolute row sum so the scaled norm is
    at most 1/2, a degree-12 Taylor polynomial of that (its first neglected term < 1e-12), then
    `squarings` squarings, each kept only while below s (s is a value: the count is fixed)."""
    n = a.shape[-1]
    norm = a.abs().sum(-1).amax(-1)[..., None, None]
    s = torch.clamp(torch.ceil(torch.log2(torch.clamp_min(norm, 1e-30) * 2)), 0, squarings)
    x = a * torch.pow(2.0, -s)
    identity = la.eye(n, n, a)
    result = identity
    for k in range(12, 0, -1):
        result = identity + (x @ result) / k
    for i in range(squarings):
        result = torch.where(s > i, result @ result, result)
    return result


class MatrixExpAsTaylor(_Definitions):
    why = "matrix exponential by scaling and squaring a Taylor polynomial"
    definitions = {aten.linalg_matrix_exp.default: (_matrix_exp, "linalg.matrix_exp", UNROLL_MAX_N),
                   aten.matrix_exp.default: (_matrix_exp, "matrix_exp", UNROLL_MAX_N)}


class EyeAsComparison(Rule):
    """torch.eye of float32: iree-compile fails on its bool-to-float conversion ("for conversion to
    byte or char type dstOriginalDtype has to be passed"), in the user's model as in linalg's own."""
    why = "float32 identity matrices (torch.eye) as a comparison of indices"
    targets = (aten.eye.default, aten.eye.m)

    @staticmethod
    def _float32(kwargs) -> bool:
        return kwargs.get("dtype") in (None, torch.float32)

    def needs(self, node):
        return node.op == "call_function" and node.target in self.targets and self._float32(node.kwargs)

    def matches(self, call):
        return call.target in self.targets and self._float32(call.kwargs)

    def replace(self, call):
        n, m = (call.args[0], call.args[0]) if call.target == aten.eye.default else call.args[:2]
        return la.eye(n, m, torch.zeros((), device=call.kwargs.get("device")))


RULES = [CholeskyAsSteps(), LuAsSteps(), QrAsHouseholder(), SpectrumAsJacobi(), MatrixExpAsTaylor(),
         EyeAsComparison()]
