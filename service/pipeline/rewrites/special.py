"""Special functions IREE has no lowering for, as float32 approximations built from ops it compiles.

Each is accurate to a few float32 roundings (relative where the function is, absolute at zeros)
over the whole float32 domain, checked against float64 references; NaN and inf as PyTorch has them.
- lgamma (gammaln, mvlgamma): shifted up to x >= 8 by the recurrence (one log of the product),
  Stirling's series with four Bernoulli terms; x < 0 by the reflection pi / |sin(pi x)|.
- digamma (psi, polygamma n=0): the same shift, the asymptotic series (five terms); reflection
  with pi cot(pi x). polygamma n >= 1: (-1)^(n+1) n! zeta(n+1, x); for x < 0 the reflection with
  the n-th derivative of cot (its polynomial in cot built for the n asked).
- zeta (Hurwitz): the sum of the first terms up to q + k >= 8, then Euler-Maclaurin (seven
  Bernoulli terms); s < 1 is NaN as in PyTorch, and so is q < -8 (beyond the sixteen terms summed).
- erfinv, ndtri: Giles' form ("Approximating the erfinv function", 2010): x P(w) with
  w = -log(1 - x^2), and x sqrt(w) Q(sqrt(w)) in the tails, P and Q fitted Chebyshev series
  (special_fits.py); ndtri's w = -log(4 p (1 - p)) keeps the tail down to p ~ 1e-45.
- erfcx, log_ndtr: erfcx(x) = t exp(R(t)), t = 2 / (2 + x) (the form of Numerical Recipes'
  erfc; R fitted), 2 exp(x^2) - erfcx(-x) for x < 0; log_ndtr from erfcx with no cancellation.
- i0, i0e, i1, i1e, modified_bessel_i0/i1: the power series (all terms positive, nested) below
  12, Hankel's asymptotic series above.
- bessel_j0/j1/y0/y1: fitted series in x^2 below 8 (with Y's log terms written out), Hankel's
  P, Q asymptotic series above, with x reduced by pi/2 in three parts (Cody and Waite). Beyond
  |x| ~ 1e5 the reduction loses digits: the amplitude there is below 3e-3 and the error below it.
- modified_bessel_k0/k1 and their scaled forms: a fitted series plus the log(x) I(x) term below 2,
  a fitted series in 2/x times e^-x / sqrt(x) above.
- spherical_bessel_j0: sin(x) / x with the reduced sine, its Taylor series near 0.
- airy_ai: the Maclaurin series (as two nested series in x^3) for |x| <= 4, the asymptotic
  series in 1/zeta, zeta = 2/3 |x|^1.5, beyond (DLMF 9.7.5, 9.7.9), decaying or oscillating (its
  phase zeta is itself rounded in float32: below x ~ -700 the error passes 1e-4, as PyTorch's does).
- Orthogonal polynomials (Chebyshev T, U, V, W and shifted, Hermite H, He, Laguerre, Legendre):
  the three-term recurrence. A degree given as a number runs to it; a degree given as a tensor
  (truncated to an integer, as PyTorch does) runs to MAX_DEGREE with where() picking each
  element's step, and a degree above MAX_DEGREE gives NaN.
"""
from __future__ import annotations

import math

import torch

from . import special_fits as fits
from .core import OpRule
from .elementwise import _HALF_PI_PARTS, _horner, _taylor_cos, _taylor_sin

aten = torch.ops.aten
MAX_DEGREE = 64
_INF, _NAN = float("inf"), float("nan")


def _clenshaw(series, x: torch.Tensor) -> torch.Tensor:
    """A Chebyshev series on [a, b] at x."""
    a, b, coefficients = series
    t = x * (2 / (b - a)) - (a + b) / (b - a)
    b1, b2 = torch.zeros_like(x), torch.zeros_like(x)
    for c in reversed(coefficients[1:]):
        b1, b2 = 2 * t * b1 - b2 + c, b1
    return t * b1 - b2 + coefficients[0]


def _sin_cos_pi(x: torch.Tensor):
    """sin(pi x) and cos(pi x), accurate relative to each: x - round(x) is exact."""
    n = torch.round(x)
    r = x - n
    sign = torch.where(n - 2 * torch.floor(n * 0.5) == 1, -1.0, 1.0)
    sin = _taylor_sin(math.pi * r) * sign   # |pi r| <= pi/2: r^13/13! is below rounding there too
    cos = _taylor_sin(math.pi * (0.5 - r.abs())) * sign
    return sin, cos


def _sin_cos(x: torch.Tensor):
    """sin(x) and cos(x), x reduced by pi/2 in three parts."""
    k = torch.round(x * (2 / math.pi))
    r = x
    for part in _HALF_PI_PARTS:
        r = r - k * part
    # clamped: beyond |x| ~ 1e5 the reduction loses digits, and a bounded error is what callers need
    s, c = _taylor_sin(r).clamp(-1, 1), _taylor_cos(r).clamp(-1, 1)
    quadrant = k - 4 * torch.floor(k * 0.25)
    sin = torch.where(quadrant == 0, s, torch.where(quadrant == 1, c, torch.where(quadrant == 2, -s, -c)))
    cos = torch.where(quadrant == 0, c, torch.where(quadrant == 1, -s, torch.where(quadrant == 2, -c, s)))
    return sin, cos


def _shift(x: torch.Tensor, term, steps: int = 8, to: float = 8.0):
    """(w, sum of term(x + k) for the k that take x + k up to w >= to)."""
    w, total = x, torch.zeros_like(x)
    for _ in range(steps):
        low = w < to
        total = torch.where(low, total + term(w), total)
        w = torch.where(low, w + 1, w)
    return w, total


def lgamma(x: torch.Tensor) -> torch.Tensor:
    reflect = x < 0
    z = torch.where(reflect, 1 - x, x)
    w, product = z, torch.ones_like(z)
    for _ in range(8):   # one log of the product: eight logs would round eight times
        low = w < 8
        product = torch.where(low, product * w, product)
        w = torch.where(low, w + 1, w)
    log_w, inverse = torch.log(w), 1 / w
    series = inverse * _horner(inverse * inverse, [1 / 12, -1 / 360, 1 / 1260, -1 / 1680])
    positive = w * (log_w - 1) - 0.5 * log_w + 0.5 * math.log(2 * math.pi) + series - torch.log(product)
    sin, _ = _sin_cos_pi(x)
    result = torch.where(reflect, math.log(math.pi) - torch.log(sin.abs()) - positive, positive)
    return torch.where(torch.isinf(x), _INF, result)


def digamma(x: torch.Tensor) -> torch.Tensor:
    reflect = x < 0
    z = torch.where(reflect, 1 - x, x)
    w, shift = _shift(z, lambda v: 1 / v)
    inverse2 = 1 / (w * w)
    series = inverse2 * _horner(inverse2, [1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132])
    positive = torch.log(w) - 0.5 / w - series - shift
    sin, cos = _sin_cos_pi(x)
    result = torch.where(reflect, positive - math.pi * cos / sin, positive)
    return torch.where(reflect & (x == torch.floor(x)), _NAN, result)


_BERNOULLI = [1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6]   # B2 .. B14


def _power(w: torch.Tensor, s) -> torch.Tensor:
    """w^-s: by products for a whole number s, else exp(-s log w) (w > 0)."""
    if isinstance(s, int):
        result = w
        for _ in range(s - 1):
            result = result * w
        return 1 / result
    return torch.exp(-s * torch.log(w))


def _zeta_tail(s, w: torch.Tensor) -> torch.Tensor:
    """Euler-Maclaurin: sum of (w + k)^-s over k >= 0, for w >= 8."""
    ws = _power(w, s)
    tail = w * ws / (s - 1) + 0.5 * ws
    term = ws / w * s
    for k, bernoulli in enumerate(_BERNOULLI, start=1):
        tail = tail + bernoulli / math.factorial(2 * k) * term
        term = term * (s + 2 * k - 1) * (s + 2 * k) / (w * w)
    return tail


def polygamma(n: int, x: torch.Tensor) -> torch.Tensor:
    if n == 0:
        return digamma(x)
    reflect = x < 0
    z = torch.where(reflect, 1 - x, x)
    w, head = _shift(z, lambda v: _power(v, n + 1))
    positive = (-1) ** (n + 1) * math.factorial(n) * (head + _zeta_tail(n + 1, w))
    # psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi^(n+1) cot^(n)(pi x); cot^(n) as a polynomial in cot
    polynomial = [0, 1]
    for _ in range(n):   # d/du P(cot u) = P'(cot) * -(1 + cot^2)
        derivative = [k * c for k, c in enumerate(polynomial)][1:]
        polynomial = [-(a + b) for a, b in zip(derivative + [0, 0], [0, 0] + derivative)]
    sin, cos = _sin_cos_pi(x)
    cot_derivative = _horner(cos / sin, [float(c) for c in polynomial])
    result = torch.where(reflect, (-1) ** n * positive - math.pi ** (n + 1) * cot_derivative, positive)
    return torch.where(reflect & (x == torch.floor(x)), (-1) ** (n + 1) * _INF, result)


def zeta(s, q):
    s, q = (torch.as_tensor(v, dtype=torch.float32) for v in (s, q))
    odd = s - 2 * torch.floor(s * 0.5) == 1
    power = lambda v: torch.where((v < 0) & odd, -1.0, 1.0) * torch.exp(-s * torch.log(v.abs()))
    w, head = _shift(q, power, steps=16)
    result = head + _zeta_tail(s, w)
    integer_q = q == torch.floor(q)
    result = torch.where((q < 0) & (s != torch.floor(s)), _NAN, torch.where(w < 8, _NAN, result))
    result = torch.where((q <= 0) & integer_q, _INF, result)
    return torch.where(s == 1, _INF, torch.where(s < 1, _NAN, result))


def _erfinv_from(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """erfinv(x) given w = -log(1 - x^2), computed by the caller without cancellation."""
    u = torch.sqrt(w)
    tail = u * torch.where(u < 4, _clenshaw(fits.ERFINV_TAIL, u), _clenshaw(fits.ERFINV_FAR_TAIL, u))
    return x * torch.where(w < 5, _clenshaw(fits.ERFINV_CENTRAL, w), tail)


def erfinv(x: torch.Tensor) -> torch.Tensor:
    result = _erfinv_from(x, -torch.log((1 - x) * (1 + x)))
    return torch.where(x.abs() == 1, x * _INF, torch.where(x.abs() > 1, _NAN, result))


def ndtri(p: torch.Tensor) -> torch.Tensor:
    result = math.sqrt(2) * _erfinv_from(2 * p - 1, -torch.log(4 * p * (1 - p)))
    result = torch.where(p == 0, -_INF, torch.where(p == 1, _INF, result))
    return torch.where((p < 0) | (p > 1), _NAN, result)


def _erfcx_positive(a: torch.Tensor) -> torch.Tensor:
    t = 2 / (2 + a)
    return t * torch.exp(_clenshaw(fits.ERFCX_LOG, t))


def erfcx(x: torch.Tensor) -> torch.Tensor:
    positive = _erfcx_positive(x.abs())
    return torch.where(x < 0, 2 * torch.exp(x * x) - positive, positive)


def log_ndtr(x: torch.Tensor) -> torch.Tensor:
    z = x * (1 / math.sqrt(2))
    lower = torch.log(0.5 * _erfcx_positive(-z)) - z * z          # x < 0: ndtr = erfc(-z) / 2
    upper = torch.log1p(-0.5 * _erfcx_positive(z) * torch.exp(-z * z))
    return torch.where(x < 0, lower, upper)


def _nested(z: torch.Tensor, ratios: list[float]) -> torch.Tensor:
    """1 + r1 z (1 + r2 z (1 + ...)): a series whose terms' ratios are r_k z, no tiny constants."""
    result = torch.ones_like(z)
    for ratio in reversed(ratios):
        result = 1 + ratio * z * result
    return result


def _hankel_ratios(order: int, count: int, sign: int) -> list[float]:
    """a_k / a_(k-1) of Hankel's series: (4 order^2 - (2k - 1)^2) / (8 k), times sign."""
    return [sign * (4 * order * order - (2 * k - 1) ** 2) / (8 * k) for k in range(1, count + 1)]


def bessel_i(x: torch.Tensor, order: int, scaled: bool) -> torch.Tensor:
    a = x.abs()
    half = a * 0.5
    series = _nested(half * half, [1 / (k * (k + order)) for k in range(1, 23)]) * (half if order else 1)
    asymptotic = _nested(1 / a, _hankel_ratios(order, 12, -1)) / torch.sqrt(2 * math.pi * a)
    if scaled:
        series = series * torch.exp(-a)
    else:   # inf from e^x's overflow, as PyTorch
        asymptotic = torch.exp(a) * asymptotic
    result = torch.where(a < 12, series, asymptotic)
    return torch.where(x < 0, -result, result) if order else result


def _hankel_p_q(a: torch.Tensor, order: int):
    coefficients, c = [1.0], 1.0
    for k in range(1, 14):
        c *= (4 * order * order - (2 * k - 1) ** 2) / (8 * k)
        coefficients.append(c)
    z = 1 / a
    p = _horner(z * z, [(-1) ** k * coefficients[2 * k] for k in range(7)])
    q = z * _horner(z * z, [(-1) ** k * coefficients[2 * k + 1] for k in range(7)])
    return p, q


def bessel_jy(x: torch.Tensor, order: int, kind: str) -> torch.Tensor:
    a = x.abs()
    p, q = _hankel_p_q(a, order)
    sin, cos = _sin_cos(a)
    cos_chi, sin_chi = (cos + sin) * math.sqrt(0.5), (sin - cos) * math.sqrt(0.5)   # chi = a - pi/4
    if order:
        cos_chi, sin_chi = sin_chi, -cos_chi
    amplitude = torch.sqrt((2 / math.pi) / a)
    s = a * a
    j_small = _clenshaw(fits.J0_SMALL, s) if order == 0 else a * _clenshaw(fits.J1_SMALL, s)
    if kind == "j":
        result = torch.where(a < 8, j_small, amplitude * (p * cos_chi - q * sin_chi))
        return torch.where(x < 0, -result, result) if order else result
    log_term = (2 / math.pi) * torch.log(a) * j_small
    y_small = (_clenshaw(fits.Y0_SMALL, s) + log_term if order == 0
               else a * _clenshaw(fits.Y1_SMALL, s) + log_term - (2 / math.pi) / a)
    result = torch.where(a < 8, y_small, amplitude * (p * sin_chi + q * cos_chi))
    return torch.where(x < 0, _NAN, torch.where(x == 0, -_INF, result))


def bessel_k(x: torch.Tensor, order: int, scaled: bool) -> torch.Tensor:
    s = x * x
    log_x = torch.log(x)
    if order == 0:
        small = _clenshaw(fits.K0_SMALL, s) - log_x * bessel_i(x, 0, False)
    else:
        small = x * _clenshaw(fits.K1_SMALL, s) + log_x * bessel_i(x, 1, False) + 1 / x
    large = _clenshaw(fits.K0_LARGE if order == 0 else fits.K1_LARGE, 2 / x) / torch.sqrt(x)
    result = torch.where(x <= 2, small * torch.exp(x), large) if scaled else \
        torch.where(x <= 2, small, large * torch.exp(-x))
    return torch.where(x < 0, _NAN, torch.where(x == 0, _INF, result))


def spherical_bessel_j0(x: torch.Tensor) -> torch.Tensor:
    sin, _ = _sin_cos(x)
    near_zero = _horner(x * x, [(-1) ** k / math.factorial(2 * k + 1) for k in range(7)])
    return torch.where(x.abs() < 0.5, near_zero, torch.where(torch.isinf(x), 0.0, sin / x))



def airy_ai(x: torch.Tensor) -> torch.Tensor:
    cube = x * x * x
    f = _nested(cube, [1 / ((3 * k) * (3 * k - 1)) for k in range(1, 13)])
    g = x * _nested(cube, [1 / ((3 * k + 1) * (3 * k)) for k in range(1, 13)])
    series = 0.355028053887817239 * f - 0.258819403792806798 * g   # Ai(0), -Ai'(0)
    a = x.abs()
    zeta = (2 / 3) * a * torch.sqrt(a)
    u = [math.gamma(3 * k + 0.5) / (54 ** k * math.factorial(k) * math.gamma(k + 0.5)) for k in range(14)]
    inverse = 1 / zeta
    root_pi_fourth_root = math.sqrt(math.pi) * torch.sqrt(torch.sqrt(a))
    decaying = torch.exp(-zeta) / (2 * root_pi_fourth_root) * _horner(inverse, [(-1) ** k * u[k] for k in range(14)])
    even = _horner(inverse * inverse, [(-1) ** k * u[2 * k] for k in range(7)])
    odd = inverse * _horner(inverse * inverse, [(-1) ** k * u[2 * k + 1] for k in range(7)])
    sin, cos = _sin_cos(zeta)   # cos(zeta - pi/4), sin(zeta - pi/4) from them
    oscillating = ((cos + sin) * even + (sin - cos) * odd) * math.sqrt(0.5) / root_pi_fourth_root
    result = torch.where(a <= 4, series, torch.where(x > 0, decaying, oscillating))
    return torch.where(torch.isinf(x), _NAN, result)   # as PyTorch


# kind -> (degree 1, step: (k, x, p_k, p_(k-1)) -> p_(k+1))
_CHEBYSHEV_STEP = lambda k, x, a, b: 2 * x * a - b
_POLYNOMIALS = {
    "t": (lambda x: x, _CHEBYSHEV_STEP),
    "u": (lambda x: 2 * x, _CHEBYSHEV_STEP),
    "v": (lambda x: 2 * x - 1, _CHEBYSHEV_STEP),
    "w": (lambda x: 2 * x + 1, _CHEBYSHEV_STEP),
    "h": (lambda x: 2 * x, lambda k, x, a, b: 2 * x * a - 2 * k * b),
    "he": (lambda x: x, lambda k, x, a, b: x * a - k * b),
    "l": (lambda x: 1 - x, lambda k, x, a, b: ((2 * k + 1 - x) * a - k * b) / (k + 1)),
    "p": (lambda x: x, lambda k, x, a, b: ((2 * k + 1) * x * a - k * b) / (k + 1)),
}


def orthogonal_polynomial(kind: str, shifted: bool, x, n):
    first, step = _POLYNOMIALS[kind]
    if not isinstance(x, torch.Tensor):
        x = torch.full_like(n, float(x))
    if shifted:
        x = 2 * x - 1
    if not isinstance(n, torch.Tensor):   # a fixed degree: the recurrence up to it
        degree = int(n)
        if degree < 0:
            return torch.zeros_like(x)
        previous, current = torch.ones_like(x), first(x)
        for k in range(1, degree):
            previous, current = current, step(k, x, current, previous)
        return previous if degree == 0 else current
    # PyTorch truncates the degree; floor(|n|) with the sign apart (IREE folds trunc, ceil and a
    # select between them wrongly when the degree is a constant)
    degree = torch.floor(n.abs())
    result = torch.where(degree > MAX_DEGREE, _NAN, 1.0)   # also degree 0
    previous, current = torch.ones_like(x), first(x)
    for k in range(1, MAX_DEGREE + 1):
        result = torch.where(degree == k, current, result)
        # the steps past an element's degree stand still: run on, they overflow to inf and NaN,
        # which IREE's selects do not keep out of the result
        going = degree > k
        following = step(k, x, current, previous)
        previous, current = torch.where(going, current, previous), torch.where(going, following, current)
    return torch.where(n.abs() - n >= 2, 0.0, result)   # n <= -1, which IREE folds wrongly for a constant n


def _mvlgamma(x: torch.Tensor, p: int) -> torch.Tensor:
    return p * (p - 1) / 4 * math.log(math.pi) + sum(lgamma(x - j / 2) for j in range(p))


def _ops(names, function):
    """{overload: function} for the named aten ops and overloads that exist in this PyTorch."""
    found = {}
    for name in names:
        packet = getattr(aten, name, None)
        for overload in ("default", "x_scalar", "n_scalar", "self_scalar", "other_scalar"):
            if packet is not None and hasattr(packet, overload):
                found[getattr(packet, overload)] = function
    return found


def _definitions() -> dict:
    definitions = {
        **_ops(["lgamma", "special_gammaln"], lgamma),
        **_ops(["digamma", "special_digamma", "special_psi"], digamma),
        **_ops(["polygamma", "special_polygamma"], polygamma),
        **_ops(["mvlgamma", "special_multigammaln"], _mvlgamma),
        **_ops(["special_zeta"], zeta),
        **_ops(["erfinv", "special_erfinv"], erfinv),
        **_ops(["special_ndtri"], ndtri),
        **_ops(["special_erfcx"], erfcx),
        **_ops(["special_log_ndtr"], log_ndtr),
        **_ops(["special_spherical_bessel_j0"], spherical_bessel_j0),
        **_ops(["special_airy_ai"], airy_ai),
    }
    for names, order, scaled in [(["i0", "special_i0", "special_modified_bessel_i0"], 0, False),
                                 (["special_i0e"], 0, True),
                                 (["special_i1", "special_modified_bessel_i1"], 1, False),
                                 (["special_i1e"], 1, True)]:
        definitions.update(_ops(names, lambda x, order=order, scaled=scaled: bessel_i(x, order, scaled)))
    for kind in "jy":
        for order in (0, 1):
            definitions.update(_ops([f"special_bessel_{kind}{order}"],
                                    lambda x, order=order, kind=kind: bessel_jy(x, order, kind)))
    for order in (0, 1):
        definitions.update(_ops([f"special_modified_bessel_k{order}"], lambda x, order=order: bessel_k(x, order, False)))
        definitions.update(_ops([f"special_scaled_modified_bessel_k{order}"],
                                lambda x, order=order: bessel_k(x, order, True)))
    for name, kind in [("chebyshev_polynomial_t", "t"), ("chebyshev_polynomial_u", "u"), ("chebyshev_polynomial_v", "v"),
                       ("chebyshev_polynomial_w", "w"), ("hermite_polynomial_h", "h"), ("hermite_polynomial_he", "he"),
                       ("laguerre_polynomial_l", "l"), ("legendre_polynomial_p", "p")]:
        definitions.update(_ops([f"special_{name}"], lambda x, n, kind=kind: orthogonal_polynomial(kind, False, x, n)))
        if kind in "tuvw":
            definitions.update(_ops([f"special_shifted_{name}"],
                                    lambda x, n, kind=kind: orthogonal_polynomial(kind, True, x, n)))
    return definitions


class SpecialFunctions(OpRule):
    """Special functions as float32 approximations: op -> function of the op's arguments."""
    why = "special functions (gamma, erf, Bessel, zeta, orthogonal polynomials) as float32 approximations"
    definitions = _definitions()
    targets = tuple(definitions)

    def applies(self, target, args):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        return bool(tensors) and all(t.dtype == torch.float32 for t in tensors)

    def replace(self, call):
        return self.definitions[call.target](*call.args, **call.kwargs)


RULES = [SpecialFunctions()]
