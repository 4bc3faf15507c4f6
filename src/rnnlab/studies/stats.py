"""The statistics behind every verdict: 95 % intervals for a mean, a success rate and a difference.

Plain Python (no scipy), each a textbook closed form:

- ``t_interval(xs)``: mean ± t_{0.975, n−1} · s/√n (Student's t; s the sample standard
  deviation). The t quantile comes from the regularised incomplete beta function
  (Numerical Recipes §6.4, continued fraction) inverted by bisection.
- ``log_interval(xs)``: the same on log10 of positive values, back-transformed: the geometric
  mean with its interval, for quantities that vary over decades (gradient ratios, times).
- ``wilson(k, n)``: Wilson's score interval for a success rate k/n (Wilson 1927), sound at
  k = 0 or k = n where the normal interval collapses.
- ``decay_factor`` / ``loglog_slope``: least-squares fits of a quantity over lengths T (the
  decay per step of a geometric law; the exponent of a power law).
- ``newcombe(k1, n1, k2, n2)``: the difference of two rates, Newcombe's hybrid score interval
  (Newcombe 1998, method 10), built from the two Wilson intervals; it ignores pairing, so on
  paired seeds it is conservative.

``measurement(...)`` packs one of these as results.json's ``measured`` block: ``mean``,
``interval`` [lo, hi] (null with fewer than two values), ``per_seed``, ``seeds``, ``n``,
``method``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LEVEL = 0.95
Z95 = 1.959963984540054  # Φ^{-1}(0.975)


# ---- Student's t ---------------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on ``t_cdf``, to ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ---- intervals -------------------------------------------------------------------------------

def _fmean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return m, sd


def t_interval(xs: Sequence[float], level: float = LEVEL) -> tuple[float, float | None,
                                                                      float | None]:
    """(mean, lo, hi): mean ± t_{(1+level)/2, n−1}·s/√n; (mean, None, None) for n < 2."""
    xs = [float(x) for x in xs]
    if not xs:
        return math.nan, None, None
    m, sd = mean_sd(xs)
    if len(xs) < 2:
        return m, None, None
    half = t_quantile((1 + level) / 2, len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, m - half, m + half


def log_interval(xs: Sequence[float], level: float = LEVEL):
    """Geometric mean and interval: ``t_interval`` on log10 of positive values, back-
    transformed; None where a value is not positive."""
    if any(not (x > 0 and math.isfinite(x)) for x in xs):
        return None, None, None
    m, lo, hi = t_interval([math.log10(x) for x in xs], level)
    back = lambda v: None if v is None else 10.0 ** v
    return back(m), back(lo), back(hi)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(k/n, lo, hi): Wilson's score interval for a success rate."""
    if n <= 0:
        return math.nan, 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    return p, lo, 1.0 if k == n else min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """(p1 − p2, lo, hi): Newcombe's hybrid score interval for a difference of two rates."""
    p1, l1, u1 = wilson(k1, n1, z)
    p2, l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return (d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def seeds_to_resolve(xs: Sequence[float], threshold: float, log: bool = False) -> int | None:
    """Roughly how many seeds would make the t-interval clear ``threshold``, if the mean and
    spread stayed as measured: n' = (z·s / |mean − threshold|)² (None when undefined)."""
    vals = [math.log10(x) for x in xs] if log else list(xs)
    if log:
        threshold = math.log10(threshold) if threshold > 0 else -math.inf
    if len(vals) < 2:
        return None
    m, sd = mean_sd(vals)
    gap = abs(m - threshold)
    if gap == 0 or not math.isfinite(gap):
        return None
    return max(len(vals) + 1, math.ceil((Z95 * sd / gap) ** 2) + 1)


def rates_to_resolve(k1: int, n1: int, k2: int | None = None, n2: int | None = None,
                     threshold: float = 0.0, limit: int = 1000) -> int | None:
    """The smallest number of trials per arm whose interval would clear ``threshold`` if the
    rates stayed as measured: Wilson's for one rate (k1/n1), Newcombe's for the difference
    k1/n1 − k2/n2 (None beyond ``limit``)."""
    p1 = k1 / n1 if n1 else 0.0
    p2 = (k2 / n2 if n2 else 0.0) if k2 is not None else None
    for n in range(max(n1, 2), limit + 1):
        if p2 is None:
            _, lo, hi = wilson(round(p1 * n), n)
        else:
            _, lo, hi = newcombe(round(p1 * n), n, round(p2 * n), n)
        if lo > threshold or hi < threshold:
            return n
    return None


# ---- fits over lengths ------------------------------------------------------------------

def slope(points) -> float | None:
    """Least-squares slope of y on x for [(x, y), ...] (None with fewer than two points)."""
    pts = list(points)
    if len(pts) < 2:
        return None
    mx, my = _fmean(p[0] for p in pts), _fmean(p[1] for p in pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def decay_factor(lengths, values) -> float | None:
    """exp of the least-squares slope of ln(value) against T − 1: the decay per step."""
    b = slope((T - 1, math.log(v)) for T, v in zip(lengths, values, strict=True) if v and v > 0)
    return None if b is None else math.exp(b)


def loglog_slope(lengths, values) -> float | None:
    """Least-squares slope of log(value) against log(T): the exponent of a power law."""
    return slope((math.log(T), math.log(v)) for T, v in zip(lengths, values, strict=True)
                 if v and v > 0)


# ---- the measured block of a claim -----------------------------------------------------------

def _clean(v, digits: int = 4):
    if v is None:
        return None
    v = float(v)
    return float(f"{v:.{digits}g}") if math.isfinite(v) else None


def measurement(per_seed: Sequence[float | None], seeds: Sequence[int], *, scale: str = "linear",
                unit: str = "", digits: int = 4, bounds: tuple | None = None) -> dict:
    """A mean with its 95 % interval over seeds. ``scale="log"``: geometric mean and interval
    (for ratios over decades); values that are None (a failed or undefined measurement) are
    left out of the statistics but kept in ``per_seed``. ``bounds``: the range the quantity
    cannot leave (an accuracy: (0, 1)); the interval is clipped to it."""
    pairs = [(s, v) for s, v in zip(seeds, per_seed, strict=True)
             if v is not None and math.isfinite(v)]
    vals = [v for _, v in pairs]
    if scale == "log":
        m, lo, hi = log_interval(vals) if vals else (None, None, None)
        method = "geometric mean, t-interval on log10"
        if vals and m is None:  # a zero or negative value: fall back to the plain mean
            m, lo, hi = t_interval(vals)
            method = "mean, t-interval (a value ≤ 0 rules out the log scale)"
    else:
        m, lo, hi = t_interval(vals) if vals else (None, None, None)
        method = "mean, t-interval"
    if bounds is not None and lo is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        method += f", clipped to [{bounds[0]:g}, {bounds[1]:g}]"
    return {"mean": _clean(m, digits), "interval": None if lo is None else
            [_clean(lo, digits), _clean(hi, digits)],
            "per_seed": [_clean(v, digits) for v in per_seed], "seeds": list(seeds),
            "n": len(vals), "method": method, "unit": unit, "scale": scale}


def rate_measurement(successes: Sequence[bool | None], seeds: Sequence[int]) -> dict:
    """A success rate with Wilson's interval (None entries: failed runs, left out)."""
    vals = [bool(s) for s in successes if s is not None]
    p, lo, hi = wilson(sum(vals), len(vals))
    return {"mean": _clean(p), "interval": [_clean(lo), _clean(hi)] if vals else None,
            "per_seed": [None if s is None else int(bool(s)) for s in successes],
            "seeds": list(seeds), "n": len(vals), "k": sum(vals), "method": "rate, Wilson",
            "unit": "", "scale": "linear"}


def rate_difference(a: Sequence[bool | None], b: Sequence[bool | None],
                    seeds: Sequence[int]) -> dict:
    """rate(a) − rate(b) with Newcombe's interval; per_seed holds a − b (1, 0, −1)."""
    va, vb = [bool(x) for x in a if x is not None], [bool(x) for x in b if x is not None]
    d, lo, hi = newcombe(sum(va), len(va), sum(vb), len(vb))
    per = [None if x is None or y is None else int(bool(x)) - int(bool(y))
           for x, y in zip(a, b, strict=True)]
    return {"mean": _clean(d), "interval": [_clean(lo), _clean(hi)] if va and vb else None,
            "per_seed": per, "seeds": list(seeds), "n": min(len(va), len(vb)),
            "k": [sum(va), sum(vb)], "method": "difference of rates, Newcombe",
            "unit": "", "scale": "linear"}
