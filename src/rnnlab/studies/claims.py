"""Claims and their three verdicts: ``holds``, ``does not hold``, ``inconclusive``.

A claim is what the course notes say (``quote``, ``source``), what rnnlab tests (``statement``),
the criterion it is judged by — a constant fixed in the study's code before anything is
measured — and the measurement: a mean with its 95 % interval over seeds and the per-seed
values (``stats.measurement``). The rule (``judge``), the same for every claim:

- ``holds``          the whole interval satisfies the criterion;
- ``does not hold``  the whole interval violates it;
- ``inconclusive``   the interval straddles it, there are fewer than two values, or the study
                     says that its budget cannot decide (``undecided``: what would).

Every verdict that is not ``holds`` carries a one-sentence ``why`` with the measured numbers.
Claims whose runs failed become ``inconclusive`` with the error (``mark_failures``). Nothing here
adjusts a criterion to the measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .stats import rates_to_resolve, seeds_to_resolve

HOLDS, FAILS, OPEN = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, OPEN)

# The course notes (lesson title, and the file it is kept in).
LESSONS = {
    "side": "Lesson 04, “Side-by-side gradient flow: RNN vs LSTM vs attention on the §A13 "
            "corpus” (side-by-side-gradient-flow)",
    "essentials": "Day 3, “RNN/LSTM Essentials” (rnn-lstm-essentials)",
    "seq2seq": "Section 3.1, “RNNs, vanishing gradients and seq2seq” "
               "(rnns-vanishing-gradients-seq2seq)",
    "diagnostics": "“RNN and LSTM Math, Part 2: GRU cell to references” "
                   "(gru-tasks-attention-training-diagnostics)",
    "loop": "“Memory as a loop, and the gradient that would not survive it” (memory-as-a-loop)",
}


def source(lesson: str, section: str, cites: str = "") -> dict:
    return {"lesson": LESSONS[lesson], "section": section, "cites": cites}


@dataclass(frozen=True)
class Criterion:
    """``op``: ">" / "<" (against ``value``), "within" [lo, hi], or "all" (every per-seed value
    is true: exact, deterministic checks). ``text`` says it in words."""

    op: str
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    text: str = ""

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.op == "within":
            return f"within [{self.lo:g}, {self.hi:g}]"
        if self.op == "all":
            return "true for every seed"
        return f"{self.op} {self.value:g}"


def above(value: float, text: str = "") -> Criterion:
    return Criterion(">", value=value, text=text)


def below(value: float, text: str = "") -> Criterion:
    return Criterion("<", value=value, text=text)


def within(lo: float, hi: float, text: str = "") -> Criterion:
    return Criterion("within", lo=lo, hi=hi, text=text)


def every(text: str) -> Criterion:
    return Criterion("all", text=text)


def brief(m: dict, digits: int = 3) -> str:
    """'0.61 [0.55, 0.67]': a measured block's mean and interval."""
    iv = m.get("interval")
    f = lambda x: "—" if x is None else f"{x:.{digits}g}"
    return f(m.get("mean")) + (f" [{f(iv[0])}, {f(iv[1])}]" if iv else "")


def show(m: dict) -> str:
    """'0.61 [0.55, 0.67] (3 seeds)' for a measured block."""
    f = lambda v: "—" if v is None else f"{v:.3g}"
    iv = m.get("interval")
    n = m.get("n", 0)
    s = f(m.get("mean")) + (f" [{f(iv[0])}, {f(iv[1])}]" if iv else "")
    return f"{s} ({n} seed{'s' if n != 1 else ''})"


def judge(c: Criterion, m: dict) -> tuple[str, str]:
    """(verdict, why) for a measured block under a criterion; see the module docstring."""
    n = m.get("n", 0)
    if c.op == "all":
        vals = [v for v in m.get("per_seed", []) if v is not None]
        if not vals:
            return OPEN, "no run produced a value"
        bad = [s for s, v in zip(m["seeds"], m["per_seed"], strict=True) if v is not None
               and not v]
        if bad:
            return FAILS, f"false for seed(s) {', '.join(map(str, bad))} of {len(vals)}"
        return HOLDS, ""
    iv = m.get("interval")
    if n == 0 or m.get("mean") is None:
        return OPEN, "no run produced a value"
    if not iv or iv[0] is None:
        return OPEN, (f"measured {show(m)}: a single seed gives no interval; run more seeds "
                      "(the default profile does)")
    lo, hi = iv
    if c.op in (">", "<"):
        v = c.value
        # x > v fails for every x of [lo, hi] iff hi ≤ v (a tie on v does not pass)
        good, bad = (lo > v, hi <= v) if c.op == ">" else (hi < v, lo >= v)
        if good:
            return HOLDS, ""
        side = "at or below" if c.op == ">" else "at or above"
        if bad:
            return FAILS, f"measured {show(m)} lies entirely {side} the criterion {c.describe()}"
        need = _need(m, v)
        return OPEN, f"the 95 % interval of {show(m)} straddles {v:.3g}{need}"
    if c.op == "within":
        if lo >= c.lo and hi <= c.hi:
            return HOLDS, ""
        if hi < c.lo or lo > c.hi:
            return FAILS, f"measured {show(m)} lies entirely outside [{c.lo:g}, {c.hi:g}]"
        edge = c.lo if lo < c.lo else c.hi
        return OPEN, f"the 95 % interval of {show(m)} straddles the bound {edge:.3g}" \
                     f"{_need(m, edge)}"
    raise ValueError(f"unknown criterion op {c.op!r}")


def _need(m: dict, threshold: float) -> str:
    vals = [v for v in m.get("per_seed", []) if v is not None]
    method = m.get("method", "")
    if method.startswith("rate") or method.startswith("difference"):
        k, n = m.get("k"), m.get("n", 0)
        need = (rates_to_resolve(k, n, threshold=threshold) if method.startswith("rate")
                else rates_to_resolve(k[0], n, k[1], n, threshold=threshold))
        return (f"; about {need} seeds per arm would decide it if the rates stayed as measured"
                if need else "")
    k = seeds_to_resolve(vals, threshold, log=m.get("scale") == "log"
                         and all(v > 0 for v in vals))
    if k and k > 200:
        return "; the mean sits almost on it, so more seeds alone would hardly decide it"
    return f"; about {k} seeds would decide it if the spread stays as measured" if k else ""


@dataclass
class Claim:
    """One claim, judged. Build it with ``claim(...)``."""

    id: str
    statement: str               # what is tested, in rnnlab's words
    quote: str                   # the notes' own words
    source: dict                 # {"lesson", "section", "cites"}
    criterion: Criterion
    expected: str                # the prediction in numbers
    measured: dict               # stats.measurement(...)
    verdict: str = OPEN
    why: str = ""
    literal: dict | None = None  # the notes' literal reading, when the fair test differs
    kind: str = "claim"          # "claim" (the notes') or "finding" (rnnlab's explanation)
    arms: tuple = ()             # the arms it rests on (a failed run makes it inconclusive)
    note: str = ""               # how it was measured

    def to_dict(self) -> dict:
        d = asdict(self)
        d["criterion"] = {"text": self.criterion.describe(),
                          **{k: v for k, v in asdict(self.criterion).items()
                             if v is not None and k != "text"}}
        d["arms"] = list(self.arms)
        return d


def bounds(seeds, up_done, down_done) -> dict:
    """Which seeds' values are bounds, for a quantity that grows with the "up" side's count and
    shrinks with the "down" side's (steps(model) − steps(LSTM); log10(LSTM / attention)), where
    an unfinished side (False) was counted just past its budget: {lower, upper, unknown}, the
    keywords of ``censored``. A seed where a side did not run (None) is left out."""
    seen = [(s, u, d) for s, u, d in zip(seeds, up_done, down_done, strict=True)
            if u is not None and d is not None]
    return {"lower": [s for s, u, d in seen if not u and d],    # the up side: at least this
            "upper": [s for s, u, d in seen if u and not d],    # the down side: at least this
            "unknown": [s for s, u, d in seen if not u and not d]}


def censored(c: Criterion, verdict: str, *, lower=(), upper=(), unknown=(),
             budget: str = "its budget") -> str | None:
    """Why ``verdict`` cannot stand when some seeds' values are bounds, not values (a run that
    did not get there within ``budget`` counts as just past it), else None. A lower bound (the
    truth is at least the value) can back a verdict that the quantity is large, never that it
    is small; an upper bound the reverse; ``unknown`` seeds (both sides unfinished) back none."""
    seeds = lambda xs: ", ".join(map(str, xs))
    if unknown:
        return (f"on seed(s) {seeds(unknown)} neither run finished within {budget}: no value "
                "there, not even a bound; a longer budget would decide")
    small = HOLDS if c.op == "<" else FAILS if c.op == ">" else None
    if small is None or verdict not in (HOLDS, FAILS):
        return None
    if verdict == small and lower:
        return (f"on seed(s) {seeds(lower)} the value is only a lower bound (a run unfinished "
                f"within {budget}), which cannot show it is small; a longer budget would decide")
    if verdict != small and upper:
        return (f"on seed(s) {seeds(upper)} the value is only an upper bound (a run unfinished "
                f"within {budget}), which cannot show it is large; a longer budget would decide")
    return None


def claim(id: str, statement: str, quote: str, source: dict, criterion: Criterion,
          expected: str, measured: dict, *, arms=(), undecided: str | None = None,
          literal: dict | None = None, kind: str = "claim", note: str = "",
          why: str | None = None) -> Claim:
    """A judged claim. ``undecided``: the budget cannot decide it (say what would): the
    verdict is ``inconclusive`` whatever the interval. ``why`` replaces the generated
    sentence for a verdict other than ``holds``."""
    verdict, auto = judge(criterion, measured)
    if undecided:
        verdict, auto = OPEN, undecided
    return Claim(id, statement, quote, source, criterion, expected, measured, verdict,
                 "" if verdict == HOLDS else (why or auto), literal, kind, tuple(arms), note)


def mark_failures(claims: list[Claim], runs: list[dict]) -> None:
    """A claim resting on an arm with a failed run becomes inconclusive, with the error."""
    for c in claims:
        bad = [r for r in runs if r.get("status") != "ok" and (not c.arms or r["arm"] in c.arms)]
        if bad:
            r = bad[0]
            c.verdict = OPEN
            c.why = (f"{len(bad)} of its runs failed (first: arm {r['arm']}, seed {r['seed']}: "
                     f"{r.get('error', 'unknown error')}); the others are kept")


def counts(claims: list[dict]) -> dict:
    out = {v: 0 for v in VERDICTS}
    for c in claims:
        out[c.get("verdict", OPEN)] = out.get(c.get("verdict", OPEN), 0) + 1
    return out


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


__all__ = ["Claim", "Criterion", "claim", "judge", "source", "above", "below", "within", "brief",
           "every", "mark_failures", "counts", "HOLDS", "FAILS", "OPEN"]
