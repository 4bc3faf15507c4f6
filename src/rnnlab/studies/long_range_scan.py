"""long-range's rows for the parallel-scan recurrences (minGRU, the LRU): what "solved" means,
steps to solve from a run's validation curve, and their claim, table and figure.

"Solved" (fixed before measuring): adding, validation MSE ≤ 0.05 (under a third of the
memoryless 1/6, the forget-bias study's target); copy memory, validation loss ≤ 0.1 × its
baseline 10·ln 8/(T+20); selective copy, accuracy at the recall steps ≥ 0.9 (chance 1/8). Steps to
solve is the first evaluation at which it holds (every ``eval_every`` steps). The scan arms stop
there; the LSTM arms they are compared with run their whole budget (the other claims read it).
"""

from __future__ import annotations

from .. import plots
from .claims import below, bounds, brief, censored, claim, judge, source
from .common import Runs, table
from .stats import measurement, rate_measurement

# task -> (the curve's metric, threshold, relative to the baseline?, solved when lower?)
SOLVE = {"adding": ("mse", 0.05, False, True), "copy": ("loss", 0.1, True, True),
         "selective-copy": ("dep_acc", 0.9, False, False)}
SCAN = ("mingru", "lru")
SRC = source("loop", "05 · Standing — What survives",
             "Feng et al. 2024 (minGRU); Orvieto et al. 2023 (LRU); Hochreiter & Schmidhuber "
             "1997 (adding)")
QUOTE = ("… Mamba-style selective SSMs and hybrid models (see Griffin) are recurrences with "
         "better-behaved dynamics. And the LSTM's deepest idea — protect the gradient path with "
         "addition and gating — survives everywhere.")


def solve_target(task: str, baseline: float) -> tuple[str, float]:
    metric, v, relative, _ = SOLVE.get(task, ("loss", 0.0, False, True))
    return metric, v * baseline if relative else v


def solved_at(curve: dict, task: str, baseline: float):
    """The first evaluation step at which the run counts as solved (None: not in its budget)."""
    if task not in SOLVE:
        return None
    _, target = solve_target(task, baseline)
    lower = SOLVE[task][3]
    for step, v in zip(curve["step"], curve["val"], strict=True):
        if v is not None and (v <= target if lower else v >= target):
            return step
    return None


def _arm(runs: Runs, prefix: str, m: str) -> str | None:
    """The arm of model m at the longest T (or L) of this task."""
    arms = sorted({r["arm"] for r in runs.all if r["arm"].startswith(prefix)
                   and r["arm"].endswith(f"-{m}")}, key=lambda a: int(a.split("-")[1][1:]))
    return arms[-1] if arms else None


def scan_claims(runs: Runs, seeds: list[int]) -> list:
    """minGRU / the LRU solve adding at the longest T in fewer steps than the LSTM (paired)."""
    out = []
    lstm = _arm(runs, "adding-", "lstm")
    for m, who in (("mingru", "minGRU"), ("lru", "The LRU")):
        arm = _arm(runs, "adding-", m)
        if not arm or not lstm or arm.split("-")[1] != lstm.split("-")[1]:
            continue
        T = int(arm.split("-")[1][1:])
        first = runs.first(lstm) or {}
        budget = (first.get("curve", {}).get("step") or [0])[-1]
        step = first.get("curve", {}).get("step", [0, 0])
        cens = budget + (step[1] - step[0] if len(step) > 1 else 0)  # unsolved: just past it
        a = runs.values(arm, "steps_to_solve", seeds)
        b = runs.values(lstm, "steps_to_solve", seeds)
        ran = lambda a_: [x is not None for x in runs.values(a_, lambda r: r.get("final"),
                                                                 seeds)]
        ok_a, ok_b = ran(arm), ran(lstm)
        diff = [None if not ok else (x or cens) - (y or cens)
                for x, y, ok in zip(a, b, ok_a, strict=True)]
        # per seed: solved (True), unsolved (False: counted just past the budget, so the
        # difference there is a bound, not a value) or not run (None)
        solved_a, solved_b = ([None if not ok else x is not None
                               for x, ok in zip(xs, oks, strict=True)]
                              for xs, oks in ((a, ok_a), (b, ok_b)))
        censor = bounds(seeds, solved_a, solved_b)
        unsolved, lstm_open = censor["lower"], censor["upper"]
        rate = {"m": rate_measurement(solved_a, seeds), "lstm": rate_measurement(solved_b, seeds)}
        crit = below(0, "mean over seeds of steps(model) − steps(LSTM) < 0 (an unsolved run "
                        f"counts as {cens}, just past the budget: a bound)")
        diffs = measurement(diff, seeds, unit="steps")
        verdict, _ = judge(crit, diffs)
        undecided = censored(crit, verdict, budget=f"{budget} steps", **censor)
        out.append(claim(
            f"{m}_adding_fewer_steps", f"{who} solves adding at T = {T} (val MSE ≤ 0.05) in "
            f"fewer steps than the LSTM on the same seeds and batches (budget {budget} steps).",
            QUOTE, SRC, crit,
            "fewer steps (gates from x_t only, no W_hh: a well-behaved gradient path)",
            diffs, arms=(arm, lstm), undecided=undecided,
            note=f"solved within the budget: {who} {rate['m']['k']}/{rate['m']['n']} "
                 f"(Wilson {brief(rate['m'])}), LSTM {rate['lstm']['k']}/{rate['lstm']['n']} "
                 f"(Wilson {brief(rate['lstm'])}); steps to solve {who}: "
                 + ", ".join("—" if x is None else str(x) for x in a) + "; LSTM: "
                 + ", ".join("—" if x is None else str(x) for x in b)
                 + (f"; the LSTM did not solve it on seed(s) {', '.join(map(str, lstm_open))}: "
                    f"counted as {cens} steps, so the difference there is a bound (at least "
                    "that many fewer)" if lstm_open else "")
                 + (f"; {who} did not solve it on seed(s) {', '.join(map(str, unsolved))}: "
                    f"counted as {cens} steps, so the difference there is a bound (at least "
                    "that many more)" if unsolved else "")))
    return out


def scan_table(runs: Runs, seeds: list[int]) -> dict | None:
    rows = []
    for prefix, task in (("adding-", "adding"), ("copy-", "copy"),
                         ("selective-", "selective copy")):
        for m in ("rnn", "lstm", *SCAN):
            arm = _arm(runs, prefix, m)
            if not arm or (m not in SCAN and not any(_arm(runs, prefix, k) for k in SCAN)):
                continue
            st = runs.values(arm, "steps_to_solve", seeds)
            ok = [r is not None for r in runs.values(arm, "final", seeds)]
            rate = rate_measurement([None if not o else x is not None
                                     for x, o in zip(st, ok, strict=True)], seeds)
            solved = [x for x in st if x is not None]
            rows.append([task, arm.split("-")[1], m, f"{rate['k']}/{rate['n']}", brief(rate),
                         brief(measurement(st, seeds, unit="steps")) if len(solved) > 1 else
                         ", ".join(map(str, solved)) or "—",
                         ", ".join("—" if x is None else f"{x:.3g}"
                                   for x in runs.values(arm, "final", seeds))])
    if not rows:
        return None
    return table("The scan recurrences beside the LSTM: steps to solve (adding: val MSE ≤ "
                 "0.05; copy: val loss ≤ 0.1 × baseline; selective copy: recall accuracy ≥ "
                 "0.9)", ["task", "T / L", "model", "solved", "rate [Wilson 95 %]",
                          "steps to solve (mean [95 %] of the solved)", "final value per seed"],
                 rows, "The scan arms stop when solved; their final value is the one at that "
                       "step. Selective copy's value is the recall accuracy (chance 1/8).")


def selective_figure(runs: Runs):
    series, L = {}, None
    for m in ("lstm", *SCAN):
        arm = _arm(runs, "selective-", m)
        ok = list(runs.ok(arm).values()) if arm else []
        if ok:
            L = arm.split("-")[1][1:]
            series[m] = {"x": ok[0]["curve"]["step"], "y": ok[0]["curve"]["val"],
                         "runs": [(o["curve"]["step"], o["curve"]["val"]) for o in ok[1:]]}
    if not series:
        return None
    fig = plots.plot_curves(series, title=f"Selective copy (length {L}): recall accuracy",
                            xlabel="step", ylabel="accuracy at the recall steps",
                            hline={"chance 1/8": 1 / 8, "solved 0.9": 0.9}, ylim=(0, 1.02))
    return ("selective_copy", fig,
            "The data tokens sit at random positions among noise, so a model must decide from "
            "each token's content what to keep. Bold: the first seed; faint: the others; a "
            "curve that ends early stopped when it solved the task. minGRU's gates read x_t; the "
            "LRU's λ does not depend on the input (a time-invariant filter), which is what "
            "Gu & Dao built the task to expose.")
