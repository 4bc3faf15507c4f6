"""forget-bias: an LSTM with forget-gate bias 0 vs 1 (Jozefowicz et al., 2015) on a long-range task.

The notes (Day 3, Exercise 3): initialise the forget-gate bias to 1.0 so that f_t ≈ σ(1) ≈ 0.73 at
the start, "biasing toward remembering"; "train with and without this initialization. Does it
help?".

Measured here on the adding problem (sequence length T; memoryless baseline MSE 1/6 ≈ 0.167):
for every seed, two LSTM regressors built from that seed — the same initial weights (one
``init_fingerprint``) except the effective forget bias b_ih_f + b_hh_f = 0 or 1 — trained on the
same batches with the same optimiser and budget. "Success" is reaching validation MSE ≤ TARGET
(a clear win over the baseline) within the budget. Reliability (how many seeds succeed) and
speed (steps to the target where both succeed) are reported apart: a single seed cannot tell
them apart.
"""

from __future__ import annotations

import math

from .. import models, plots
from ..data import build_task
from ..seeding import fingerprint
from ..train import fit
from .claims import above, below, claim, source
from .common import (
    CpuClock,
    Runs,
    Summary,
    curve,
    pick,
    set_forget_bias,
    sig,
    specs,
    steps_to,
    table,
)
from .stats import measurement, rate_difference, rate_measurement

NAME = "forget-bias"
SEEDS = {"quick": 2, "default": 8, "full": 32}
BIASES = {"bias-0": 0.0, "bias-1": 1.0}
TELEMETRY = "rnn-telemetry"  # a vanilla RNN on the first seed: the heat maps' comparison
TARGET = 0.05  # val MSE (baseline 0.167)
BASELINE = 1 / 6
SRC = source("essentials", "Exercise 3: Forget Gate Bias Initialization",
             "Jozefowicz et al. 2015, “An Empirical Exploration of Recurrent Network "
             "Architectures”")
QUOTE = ("LSTM forget gates are often initialized with a bias of 1.0 (Jozefowicz et al., 2015) "
         "so that f_t ≈ σ(1) ≈ 0.73 initially — biasing toward remembering. … Train with and "
         "without this initialization. Does it help?")
INTRO = {
    "title": "Forget-gate bias 1 vs 0",
    "question": "Does initialising the LSTM's forget-gate bias to 1 help it learn a long-range "
                "task — more reliably, sooner, or to a lower loss?",
    "quote": QUOTE, "source": SRC,
    "method": "For each seed, two LSTMs with identical initial weights except the forget bias "
              "(0 or 1) train on identical batches of the adding problem; success = validation "
              f"MSE ≤ {TARGET} within the budget (baseline 0.167).",
}


def budget(profile: str) -> dict:
    return {"T": pick(profile, quick=20, default=50), "steps": pick(profile, quick=60,
                                                                    default=1500),
            "trace_every": pick(profile, quick=10, default=50),
            "hidden": pick(profile, quick=32, default=64),
            "eval_every": pick(profile, quick=20, default=50),
            "eval_batches": pick(profile, quick=2, default=4), "lr": 5e-3, "batch": 32}


def plan(profile: str, seeds: list[int]):
    """The two LSTM arms on every seed; on the first seed both are traced while training
    (telemetry every ``trace_every`` steps) beside a vanilla RNN trained alike (``TELEMETRY``),
    for the training-time heat maps: a figure, no claim rests on the RNN."""
    b = {**budget(profile), "trace_seed": seeds[0]}
    cost = 0.3 if profile == "quick" else b["steps"] * 0.005
    out = specs(NAME, profile, seeds, {a: {**b, "forget_bias": v} for a, v in BIASES.items()},
                cost)
    return out + specs(NAME, profile, seeds[:1], {TELEMETRY: {**b, "model": "rnn"}}, cost)


def run_one(spec) -> dict:
    s = spec.settings
    task = build_task("adding", length=s["T"])
    shared = {}

    kind = s.get("model", "lstm")

    def build():  # called by fit after seeding: the same weights for both arms of a seed
        m = models.for_task(task, kind, hidden_size=s["hidden"], num_layers=1)
        shared["fingerprint"] = fingerprint(m)
        return set_forget_bias(m, s["forget_bias"]) if kind == "lstm" else m

    traced = spec.seed == s.get("trace_seed")
    hist = fit(build, task, steps=s["steps"], batch_size=s["batch"], lr=s["lr"], clip=1.0,
               eval_every=s["eval_every"], eval_batches=s["eval_batches"], seed=spec.seed,
               callbacks=[CpuClock()], trace_every=s["trace_every"] if traced else 0)
    reached = steps_to(hist, "val_mse", TARGET, higher=False)
    return {"init_fingerprint": shared["fingerprint"], "arm_fingerprint": hist.init_fingerprint,
            "steps_to_target": reached, "success": reached is not None,
            "final_val_mse": sig(hist.final.get("mse"), 4), "stopped": hist.stopped,
            "curve": curve(hist, "val_mse"),
            "telemetry": [{"step": r["step"], "layers": {
                n: {"grad_h": [[sig(x, 3) for x in row] for row in _np_list(v["grad_h"])]}
                for n, v in r["layers"].items()}} for r in hist.telemetry] if traced else None}


def _np_list(v) -> list:
    return v.tolist() if hasattr(v, "tolist") else v


def summarise(runs: Runs, profile: str, seeds: list[int]) -> Summary:
    b = budget(profile)
    both = runs.seeds("bias-0", "bias-1")
    ok = {a: runs.values(a, "success", seeds) for a in BIASES}
    mse = {a: runs.values(a, "final_val_mse", both) for a in BIASES}
    steps = {a: runs.values(a, "steps_to_target", both) for a in BIASES}
    nobody = not any(v for a in BIASES for v in ok[a] if v)
    undecided = (f"no run of either arm reached val MSE ≤ {TARGET} within {b['steps']} steps "
                 f"at T = {b['T']}: this budget cannot decide (the default profile trains 1500 "
                 "steps at T = 50)") if nobody else None
    d_mse = [math.log10(y / x) if x and y else None for x, y in zip(mse["bias-0"],
                                                                    mse["bias-1"], strict=True)]
    pair_steps = [(s, x, y) for s, x, y in zip(both, steps["bias-0"], steps["bias-1"],
                                               strict=True) if x is not None and y is not None]
    d_steps = [y - x for _, x, y in pair_steps]
    rate = {a: rate_measurement(ok[a], seeds) for a in BIASES}
    n = len(seeds)
    claims = [
        claim("bias1_more_reliable", "Forget bias 1 makes success more likely: a larger share "
              f"of seeds reaches val MSE ≤ {TARGET} on adding (T = {b['T']}) within "
              f"{b['steps']} steps than with bias 0 (paired seeds).", QUOTE, SRC,
              above(0, "success rate(bias 1) − success rate(bias 0) > 0 (Newcombe 95 % "
                    "interval above 0)"),
              "bias 1 succeeds more often (the notes: 'biasing toward remembering')",
              rate_difference(ok["bias-1"], ok["bias-0"], seeds), arms=tuple(BIASES),
              undecided=undecided,
              note=f"bias 1: {rate['bias-1']['k']}/{rate['bias-1']['n']} seeds, bias 0: "
                   f"{rate['bias-0']['k']}/{rate['bias-0']['n']}"),
        claim("bias1_lower_final_mse", "Forget bias 1 ends the budget at a lower validation "
              "MSE than bias 0 on the same seed.", QUOTE, SRC,
              below(0, "mean over seeds of log10(MSE bias 1 / MSE bias 0) < 0"),
              "log10 ratio < 0 (bias 1 lower)", measurement(d_mse, both, unit="log10 ratio"),
              arms=tuple(BIASES)),
        claim("bias1_sooner", "Where both arms of a seed reach the target, bias 1 reaches it in "
              "fewer steps.", QUOTE, SRC,
              below(0, "mean over seeds of steps(bias 1) − steps(bias 0) < 0"),
              "fewer steps with bias 1",
              measurement(d_steps, [s for s, _, _ in pair_steps], unit="steps"),
              arms=tuple(BIASES), undecided=undecided),
        claim("beats_baseline", f"An LSTM with forget bias 1 beats the memoryless baseline "
              f"(MSE 0.167) on adding at T = {b['T']} within {b['steps']} steps.",
              QUOTE, SRC, below(0.9 * BASELINE, "geometric-mean final val MSE < 0.9 × 0.167 "
                                "= 0.15"),
              "final MSE well below 0.167",
              measurement(runs.values("bias-1", "final_val_mse", seeds), seeds, scale="log"),
              arms=("bias-1",)),
    ]
    fp = {s: (runs.ok("bias-0").get(s, {}).get("init_fingerprint"),
              runs.ok("bias-1").get(s, {}).get("init_fingerprint")) for s in seeds}
    paired = all(x == y for x, y in fp.values() if x and y)
    distinct = len({x for x, _ in fp.values() if x}) == len([x for x, _ in fp.values() if x])
    figures = [_curves(runs, b), _finals(runs, both, mse), *_telemetry(runs, b)]
    rows = [[s, *(runs.ok(a).get(s, {}).get("steps_to_target") or "never" for a in BIASES),
             *(runs.ok(a).get(s, {}).get("final_val_mse") for a in BIASES), fp[s][0]]
            for s in seeds]
    tables = [table(f"Per seed: steps to val MSE ≤ {TARGET} and final val MSE (T = {b['T']}, "
                    f"{b['steps']} steps)", ["seed", "steps, bias 0", "steps, bias 1",
                                             "final MSE, bias 0", "final MSE, bias 1",
                                             "initial weights (both arms)"], rows)]
    notes = [f"{n} seeds; for each, both arms start from the same weights apart from the forget "
             f"bias (fingerprints equal within every seed: {paired}; different across seeds: "
             f"{distinct}) and see the same batches.",
             "Reliability: success rates with Wilson intervals (bias 1 "
             f"{rate['bias-1']['mean']} {rate['bias-1']['interval']}, bias 0 "
             f"{rate['bias-0']['mean']} {rate['bias-0']['interval']}); their difference with "
             "Newcombe's interval (which ignores the pairing: conservative).",
             f"Budget: quick T=20, 60 steps, 2 seeds; default T=50, 1500 steps, 8 seeds; full "
             f"the same with 32 seeds, enough to separate 8/8 from 6/8 successes. This run: "
             f"T={b['T']}, {b['steps']} steps."]
    return Summary(claims, figures, tables, notes, {"task": {"name": "adding", "length": b["T"]},
                   "model": "regressor", "backbone": "lstm", "optimizer": "adam", "clip": 1.0,
                   **b, "forget_biases": BIASES, "target_mse": TARGET},
                   {"pairing": {"equal_within_seed": paired, "distinct_across_seeds": distinct},
                    "success_rate": {a: rate[a] for a in BIASES}})


def _curves(runs: Runs, b: dict):
    panels = []
    for a, v in BIASES.items():
        ok = runs.ok(a)
        if not ok:
            continue
        first = next(iter(ok.values()))["curve"]
        panels.append({"title": f"forget bias {v:g} ({len(ok)} seeds)", "xlabel": "step",
                       "ylabel": "validation MSE", "logy": True,
                       "series": {f"lstm, bias {v:g}": {
                           "x": first["step"], "y": _median([r["curve"]["val_mse"]
                                                             for r in ok.values()]),
                           "runs": [r["curve"]["val_mse"] for r in ok.values()]}},
                       "hline": {"baseline 0.167": BASELINE, f"target {TARGET}": TARGET}})
    fig = plots.plot_panels(panels, title=f"LSTM on adding (T = {b['T']}): forget bias 0 vs 1")
    return ("learning_curves", fig,
            "One faint line per seed, the bold line their median. Look at how many seeds fall "
            f"below the target line ({TARGET}) within the budget in each panel (reliability) "
            "and how early they do it (speed): the two need not agree.")


def _median(curves):
    from statistics import median

    return [median([c[i] for c in curves if c[i] is not None] or [float("nan")])
            for i in range(min(len(c) for c in curves))]


def _finals(runs: Runs, both, mse):
    groups = {f"bias {v:g}": dict(zip(both, mse[a], strict=True)) for a, v in BIASES.items()}
    summ = {}
    for a, v in BIASES.items():
        m = measurement(mse[a], both, scale="log")
        summ[f"bias {v:g}"] = (m["mean"], *(m["interval"] or [None, None]))
    fig = plots.plot_paired(groups, title="Final validation MSE, per seed", ylabel="val MSE",
                            logy=True, hline={"baseline 0.167": BASELINE,
                                              f"target {TARGET}": TARGET}, summaries=summ)
    return ("final_mse_paired", fig,
            "Each grey line joins the two arms of one seed (same initial weights, same "
            "batches); black diamonds are geometric means with 95 % intervals. Lines falling "
            "to the right mean bias 1 ended lower on that seed.")


def _telemetry(runs: Runs, b: dict) -> list:
    """The training-time heat maps of the traced seed: the vanilla RNN beside both LSTMs."""
    tele = {}
    for arm, label in ((TELEMETRY, "vanilla RNN"), ("bias-1", "LSTM, forget bias 1"),
                       ("bias-0", "LSTM, forget bias 0")):
        r = runs.first(arm)
        if r and r.get("telemetry"):
            tele[label], seed = r["telemetry"], r["seed"]
    if len(tele) < 2:
        return []
    fig = plots.plot_telemetry_side_by_side(
        tele, title=f"log₁₀‖∂L/∂h_t‖ while training on adding (T = {b['T']}, seed {seed}, "
                    f"traced every {b['trace_every']} steps)")
    return [("telemetry_heatmaps", fig,
             "Each panel is one run: time step t across (the loss is at the last step, t = "
             f"{b['T'] - 1}), training step up, colour the gradient reaching h_t (one colour "
             "scale for all). Read each row from right to left: how far back the gradient "
             "reaches at that point of training. Compare the left part of the panels as "
             "training goes on: where an LSTM learns to hold its forget gates open the early "
             "columns brighten, suddenly, at about the step where that run's validation MSE drops "
             "(compare the learning curves; on a given seed bias 1 need not be the first); the "
             "vanilla RNN's early columns stay many orders of magnitude darker throughout.")]
