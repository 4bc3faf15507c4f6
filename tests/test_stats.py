"""rnnlab.studies.stats and the verdict rule, against published values and closed forms."""

import math

import pytest

from rnnlab.studies import claims as cl
from rnnlab.studies import stats

Z = stats.Z95


@pytest.mark.parametrize("df, q", [(1, 12.706204736174698), (2, 4.302652729911275),
                                   (4, 2.7764451051977987), (7, 2.3646242510102993),
                                   (30, 2.0422724563012373)])
def test_t_quantile_matches_tables(df, q):
    assert stats.t_quantile(0.975, df) == pytest.approx(q, rel=1e-9)
    assert stats.t_quantile(0.025, df) == pytest.approx(-q, rel=1e-9)


def test_t_distribution_closed_forms():
    assert stats.t_quantile(0.975, 1e9) == pytest.approx(Z, rel=1e-6)  # → normal
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):                               # df = 1: Cauchy
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    for t in (-2.0, 0.3, 1.5):                                          # df = 2: closed form
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)),
                                                  abs=1e-12)
    assert stats.betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1−(1−x)^3(1+3x)


def test_t_interval():
    m, lo, hi = stats.t_interval([1.0, 2.0, 3.0])           # s = 1, n = 3
    half = 4.302652729911275 / math.sqrt(3)
    assert (m, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert stats.t_interval([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    assert stats.t_interval([4.0]) == (4.0, None, None)      # one seed: no interval
    g, glo, ghi = stats.log_interval([1e-3, 1e-5])          # geometric mean 1e-4
    assert g == pytest.approx(1e-4) and glo < 1e-5 < 1e-3 < ghi
    assert stats.log_interval([0.0, 1.0]) == (None, None, None)


def test_wilson_closed_forms_and_published_value():
    p, lo, hi = stats.wilson(8, 8)                          # k = n: lo = n / (n + z²)
    assert (p, hi) == (1.0, 1.0) and lo == pytest.approx(8 / (8 + Z * Z))
    p, lo, hi = stats.wilson(0, 3)                          # k = 0: hi = z² / (n + z²)
    assert (p, lo) == (0.0, 0.0) and hi == pytest.approx(Z * Z / (3 + Z * Z))
    # Newcombe (1998), Table I: 81/263, score interval 0.2553 to 0.3662
    _, lo, hi = stats.wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)


def test_newcombe_published_example():
    # Newcombe (1998), Stat. Med. 17: 873, method 10: 56/70 − 48/80 = 0.2 (0.0524, 0.3339)
    d, lo, hi = stats.newcombe(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


def test_fits_recover_the_law():
    L = [5, 10, 20, 50]
    assert stats.decay_factor(L, [3 * 0.9 ** (T - 1) for T in L]) == pytest.approx(0.9)
    assert stats.loglog_slope(L, [7 / T for T in L]) == pytest.approx(-1.0)
    assert stats.decay_factor([5], [1.0]) is None


def test_measurement_blocks():
    m = stats.measurement([0.5, None, 0.7], [0, 1, 2])      # a failed seed is left out
    assert m["n"] == 2 and m["per_seed"] == [0.5, None, 0.7] and m["mean"] == 0.6
    r = stats.rate_measurement([True, True, False, None], [0, 1, 2, 3])
    assert (r["k"], r["n"], r["per_seed"]) == (2, 3, [1, 1, 0, None])
    d = stats.rate_difference([True, True], [False, True], [0, 1])
    assert d["per_seed"] == [1, 0] and d["mean"] == 0.5


def _m(values, scale="linear"):
    return stats.measurement(values, list(range(len(values))), scale=scale)


def test_three_verdicts():
    hi = _m([0.95, 0.96, 0.97])
    assert cl.judge(cl.above(0.9), hi)[0] == cl.HOLDS
    assert cl.judge(cl.below(0.9), hi)[0] == cl.FAILS
    verdict, why = cl.judge(cl.above(0.9), _m([0.8, 0.95, 1.05]))
    assert verdict == cl.OPEN and "straddles 0.9" in why and "seeds would decide" in why
    assert cl.judge(cl.within(0.89, 0.91), _m([0.899, 0.9, 0.901]))[0] == cl.HOLDS
    assert cl.judge(cl.within(0.89, 0.91), _m([0.95, 0.96, 0.97]))[0] == cl.FAILS
    verdict, why = cl.judge(cl.above(0.0), _m([1.0]))
    assert verdict == cl.OPEN and "single seed" in why
    assert cl.judge(cl.every("x"), _m([1.0, 0.0]))[0] == cl.FAILS
    assert cl.judge(cl.every("x"), _m([1.0, 1.0]))[0] == cl.HOLDS
    # a log-scale measurement is judged on its geometric interval
    assert cl.judge(cl.below(1e-3), _m([1e-6, 1e-7, 1e-5], "log"))[0] == cl.HOLDS


def test_every_verdict_but_holds_has_a_reason_and_budget_overrides():
    src = cl.source("side", "s")
    c = cl.claim("a", "s", "q", src, cl.above(0.9), "e", _m([0.5, 0.6, 0.55]))
    assert c.verdict == cl.FAILS and "0.55" in c.why
    c = cl.claim("b", "s", "q", src, cl.above(0.9), "e", _m([0.95, 0.96, 0.97]),
                 undecided="not decided at this budget")
    assert c.verdict == cl.OPEN and c.why == "not decided at this budget"
    c = cl.claim("c", "s", "q", src, cl.above(0.9), "e", _m([0.95, 0.96, 0.97]), arms=("x",))
    assert c.verdict == cl.HOLDS and c.why == ""
    cl.mark_failures([c], [{"arm": "x", "seed": 2, "status": "failed", "error": "Boom: 1"}])
    assert c.verdict == cl.OPEN and "Boom: 1" in c.why
    d = c.to_dict()
    assert {"id", "statement", "source", "criterion", "expected", "measured", "verdict",
            "why"} <= set(d)
    assert {"mean", "interval", "per_seed"} <= set(d["measured"])


def test_how_many_seeds_would_decide_a_rate():
    n = stats.rates_to_resolve(8, 8, 6, 8)          # 8/8 vs 6/8: not yet separated at 8
    assert n is not None and n > 8
    assert stats.newcombe(n, n, round(0.75 * n), n)[1] > 0
    assert stats.newcombe(n - 1, n - 1, round(0.75 * (n - 1)), n - 1)[1] <= 0
    assert stats.rates_to_resolve(3, 3, threshold=0.5) == 4    # Wilson(4/4) = [0.51, 1]
    assert stats.rates_to_resolve(1, 2, threshold=0.5) is None  # sits on the threshold
