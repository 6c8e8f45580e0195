"""The factorizations linalg.py's rules are written in: float32 arithmetic unrolled over the static
matrix size, batched over any leading dimensions, with no data-dependent control flow.

Each follows the LAPACK routine PyTorch calls closely enough to give the same output, not just an
equivalent one: the same pivot (the first largest |a|, getrf), the same Householder reflectors
(beta = -sign(alpha) ||x||, larfg), the same triangle read. Pivot choices and row swaps are masks
and `where`, never indexing by a computed value. Singular values and symmetric eigenvalues come from
cyclic Jacobi sweeps (one-sided for the SVD, Hestenes 1958), sorted by a compare-exchange network.
"""
from __future__ import annotations

import torch

def _arange(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(n, dtype=like.dtype, device=like.device)


def eye(m: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """As a comparison: iree-compile fails on torch.eye's bool-to-float conversion."""
    return torch.where(_arange(m, like)[:, None] == _arange(n, like), 1.0, 0.0)


def transpose(a: torch.Tensor) -> torch.Tensor:
    return a.transpose(-1, -2)


def cholesky_lower(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, info): A = L L^T from A's lower triangle (potrf, column by column); info = the first
    column (from 1) whose pivot is not positive, else 0."""
    n = a.shape[-1]
    rows = _arange(n, a)
    columns, bad = [], []
    for j in range(n):
        s = a[..., :, j]
        for column in columns:
            s = s - column * column[..., j:j + 1]
        pivot = s[..., j:j + 1]
        bad.append(~(pivot > 0))
        columns.append(torch.where(rows >= j, s / torch.sqrt(pivot), torch.zeros_like(s)))
    failed = torch.cat(bad, -1)
    first = torch.amin(torch.where(failed, rows + 1, torch.full_like(rows, n + 1)), -1)
    info = torch.where(first > n, torch.zeros_like(first), first).to(torch.int32)
    return torch.stack(columns, -1), info


def solve_triangular(a: torch.Tensor, b: torch.Tensor, upper: bool, unit: bool = False) -> torch.Tensor:
    """X with A X = B, reading only A's triangle (and not its diagonal when unit): substitution,
    one row of X at a time."""
    n = a.shape[-1]
    order = range(n - 1, -1, -1) if upper else range(n)
    solved: dict[int, torch.Tensor] = {}
    for i in order:
        row = b[..., i:i + 1, :]
        known = sorted(solved)
        if known:
            lo, hi = known[0], known[-1] + 1
            row = row - a[..., i:i + 1, lo:hi] @ torch.cat([solved[k] for k in range(lo, hi)], -2)
        solved[i] = row if unit else row / a[..., i:i + 1, i:i + 1]
    return torch.cat([solved[i] for i in range(n)], -2)


def _first_largest(values: torch.Tensor, allowed: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The index (as a float, keepdim) of the first largest value where allowed (idamax)."""
    masked = torch.where(allowed, values, torch.full_like(values, -1.0))
    top = torch.amax(masked, -1, keepdim=True)
    big = torch.full_like(masked, float(values.shape[-1]))
    return torch.amin(torch.where(allowed & (masked == top), index, big), -1, keepdim=True)


def lu_factor(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LU, pivots from 0 as floats, info): getrf's partial pivoting, L and U packed in one matrix."""
    m, n = a.shape[-2:]
    rows, cols = _arange(m, a), _arange(n, a)
    pivots, zero = [], []
    for j in range(min(m, n)):
        p = _first_largest(a[..., :, j].abs(), rows >= j, rows)          # (..., 1)
        pivots.append(p)
        is_j, is_p = (rows == j)[:, None], (rows == p)[..., :, None]
        row_j, row_p = a[..., j:j + 1, :], (a * is_p).sum(-2, keepdim=True)
        a = torch.where(is_j, row_p, torch.where(is_p, row_j, a))         # swap rows j and p
        pivot = a[..., j:j + 1, j:j + 1]
        zero.append(pivot[..., 0] == 0)
        below = (rows > j)[:, None]
        multipliers = torch.where(below, a[..., :, j:j + 1] / torch.where(pivot == 0, 1.0, pivot), 0.0)
        multipliers = torch.where(pivot == 0, 0.0, multipliers)
        update = a - multipliers * torch.where(cols > j, a[..., j:j + 1, :], 0.0)
        a = torch.where(below & (cols == j), torch.where(pivot == 0, a, multipliers), update)
    k = torch.arange(1, min(m, n) + 1, dtype=a.dtype)
    failed = torch.cat(zero, -1)
    first = torch.amin(torch.where(failed, k, torch.full_like(k, m + n + 1.0)), -1)
    info = torch.where(first > m + n, 0.0, first).to(torch.int32)
    return a, torch.cat(pivots, -1), info


def permutation(pivots: torch.Tensor, m: int) -> torch.Tensor:
    """P (m x m) with A = P L U, from getrf's pivots (from 0, floats): row swaps applied in turn."""
    rows = _arange(m, pivots)
    order = rows.expand(*pivots.shape[:-1], m)
    for j in range(pivots.shape[-1]):
        p = pivots[..., j:j + 1]
        at_p = (order * (rows == p)).sum(-1, keepdim=True)
        order = torch.where(rows == j, at_p, torch.where(rows == p, order[..., j:j + 1], order))
    return torch.where(order[..., None, :] == rows[:, None], 1.0, 0.0)    # P[r, i] = (order[i] == r)


def unpack_lu(lu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = lu.shape[-2:]
    k = min(m, n)
    lower = torch.tril(lu[..., :, :k], -1) + eye(m, k, lu)
    return lower, torch.triu(lu[..., :k, :])


def lu_solve(lu: torch.Tensor, pivots: torch.Tensor, b: torch.Tensor, adjoint: bool = False) -> torch.Tensor:
    """X with A X = B (or A^T X = B), A = P L U."""
    p = permutation(pivots, lu.shape[-1])
    if adjoint:
        y = solve_triangular(transpose(lu), b, upper=False)
        return p @ solve_triangular(transpose(lu), y, upper=True, unit=True)
    y = solve_triangular(lu, transpose(p) @ b, upper=False, unit=True)
    return solve_triangular(lu, y, upper=True)


def slogdet(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lu, pivots, _ = lu_factor(a)
    diagonal = torch.diagonal(lu, 0, -2, -1)
    swaps = torch.where(pivots != _arange(pivots.shape[-1], pivots), 1.0, 0.0).sum(-1)
    parity = 1 - 2 * (swaps - 2 * torch.floor(swaps * 0.5))
    sign = torch.sign(diagonal).prod(-1) * parity
    return sign, torch.log(diagonal.abs()).sum(-1)


def householder(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """geqrf: (R above the diagonal with the reflectors below it, tau). H_j = I - tau_j v_j v_j^T,
    v_j = (0.., 1, a[j+1:, j]); beta = -sign(alpha) ||(alpha, x)|| as larfg (tau = 0 when x = 0)."""
    m, n = a.shape[-2:]
    rows, cols = _arange(m, a)[:, None], _arange(n, a)
    taus = []
    for j in range(min(m, n)):
        column = a[..., :, j:j + 1]
        alpha = a[..., j:j + 1, j:j + 1]
        tail = torch.where(rows > j, column, 0.0)
        tail_norm2 = (tail * tail).sum(-2, keepdim=True)
        still = tail_norm2 == 0
        norm = torch.sqrt(alpha * alpha + tail_norm2)
        beta = torch.where(alpha >= 0, -norm, norm)
        tau = torch.where(still, 0.0, (beta - alpha) / torch.where(still, 1.0, beta))
        v_tail = tail / torch.where(still, 1.0, alpha - beta)
        v = torch.where(rows == j, 1.0, v_tail)
        w = transpose(v) @ torch.where(cols > j, a, 0.0)                  # (..., 1, n)
        a = a - tau * v * w
        new_column = torch.where(rows == j, torch.where(still, alpha, beta), torch.where(rows > j, v_tail, column))
        a = torch.where(cols == j, new_column, a)
        taus.append(tau[..., 0, 0])
    return a, torch.stack(taus, -1)


def _reflector(reflectors: torch.Tensor, j: int) -> torch.Tensor:
    rows = _arange(reflectors.shape[-2], reflectors)[:, None]
    return torch.where(rows == j, 1.0, torch.where(rows > j, reflectors[..., :, j:j + 1], 0.0))


def apply_q(reflectors: torch.Tensor, tau: torch.Tensor, c: torch.Tensor, left: bool, transposed: bool) -> torch.Tensor:
    """op(Q) C or C op(Q) with Q = H_0 H_1 ... H_(k-1) (ormqr)."""
    k = tau.shape[-1]
    forward = left == transposed   # Q^T C and C Q apply H_0 first
    for j in (range(k) if forward else range(k - 1, -1, -1)):
        v, t = _reflector(reflectors, j), tau[..., j, None, None]
        c = c - t * v * (transpose(v) @ c) if left else c - t * (c @ v) * transpose(v)
    return c


def householder_product(reflectors: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The first n columns of Q (orgqr)."""
    m, n = reflectors.shape[-2:]
    identity = eye(m, n, reflectors).expand(*reflectors.shape[:-2], m, n)
    return apply_q(reflectors, tau, identity, left=True, transposed=False)


def sort_last(values: torch.Tensor, descending: bool) -> torch.Tensor:
    """Odd-even transposition sort along the last (short) dimension: n rounds of compare-exchange."""
    parts = list(values.unbind(-1))
    for round_ in range(len(parts)):
        for i in range(round_ % 2, len(parts) - 1, 2):
            low, high = torch.minimum(parts[i], parts[i + 1]), torch.maximum(parts[i], parts[i + 1])
            parts[i], parts[i + 1] = (high, low) if descending else (low, high)
    return torch.stack(parts, -1)


def _rounds(n: int) -> list[list[int]]:
    """Round-robin pairings of n (even) columns, as arrangements: a round pairs column i of the
    first half with column i of the second, every column once, and n - 1 rounds pair every two
    columns once (the circle method), so a round's rotations are disjoint."""
    players, rounds = list(range(n)), []
    for _ in range(n - 1):
        rounds.append(players[:n // 2] + players[n // 2:][::-1])
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def _jacobi_angle(app, aqq, apq):
    """c, s zeroing apq of [[app, apq], [apq, aqq]]: the smaller rotation, t = tan of its angle
    written without dividing by apq (the identity when apq = 0)."""
    d = aqq - app
    t = 2 * apq * torch.where(d >= 0, 1.0, -1.0) / torch.clamp_min(d.abs() + torch.sqrt(d * d + 4 * apq * apq),
                                                                    torch.finfo(d.dtype).tiny)
    c = torch.rsqrt(1 + t * t)
    return c, t * c


def singular_values(a: torch.Tensor, vectors: bool = False):
    """One-sided Jacobi: rotate pairs of columns until orthogonal; their norms are the singular
    values, in no particular order. The n / 2 rotations of a round are disjoint, so they run at
    once: the columns are kept in the round's arrangement (pairs i and h + i), rearranged between
    rounds by one gather. With vectors: (norms, A V, V), the columns of A V and V in the same
    order, A V's being U's scaled by the norms."""
    if a.shape[-1] > a.shape[-2]:
        a = transpose(a)
    n = a.shape[-1]
    padded = n + n % 2   # a zero column is never rotated (its products are 0)
    if padded > n:
        a = torch.cat([a, torch.zeros_like(a[..., :, :1])], -1)
    v = eye(padded, padded, a).expand(*a.shape[:-2], padded, padded) if vectors else None
    rounds, h = _rounds(padded), padded // 2
    order = list(range(padded))
    for _ in range(jacobi_sweeps(padded)):
        for arrangement in rounds:
            take = torch.tensor([order.index(k) for k in arrangement])
            a, order = a[..., :, take], arrangement
            x, y = a[..., :, :h], a[..., :, h:]
            c, s = _jacobi_angle((x * x).sum(-2, keepdim=True), (y * y).sum(-2, keepdim=True),
                                 (x * y).sum(-2, keepdim=True))
            a = torch.cat([c * x - s * y, s * x + c * y], -1)
            if vectors:
                v = v[..., :, take]
                vx, vy = v[..., :, :h], v[..., :, h:]
                v = torch.cat([c * vx - s * vy, s * vx + c * vy], -1)
    kept = torch.tensor([i for i, k in enumerate(order) if k < n])   # the padding column left out
    norms = torch.sqrt((a * a).sum(-2))[..., kept]
    return (norms, a[..., :, kept], v[..., :n, kept]) if vectors else norms


def jacobi_sweeps(n: int) -> int:
    """Convergence is quadratic: 4 sweeps reach float32 rounding for n <= 4, 6 for n <= 8."""
    return 4 if n <= 4 else 5 if n <= 6 else 6


def symmetric_eigenvalues(a: torch.Tensor) -> torch.Tensor:
    """Of a symmetric A, unsorted: shifted by r >= its spectral radius (the largest absolute row
    sum), A + r I has the eigenvalues plus r, all >= 0, which are then its singular values."""
    n = a.shape[-1]
    radius = a.abs().sum(-1).amax(-1)[..., None, None]
    return singular_values(a + radius * eye(n, n, a)) - radius[..., 0]
