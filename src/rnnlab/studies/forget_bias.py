"""forget-bias: an LSTM with forget-gate bias 0 vs 1 (Jozefowicz et al., 2015) on a long-range task.

The notes (rnn-lstm-essentials.txt, Exercise 3): initialise the forget-gate bias to 1.0 so that
f_t ≈ σ(1) ≈ 0.73 at the start, "biasing toward remembering"; "train with and without this
initialization. Does it help?".

Measured here on the adding problem (rnnlab.data, sequence length T; memoryless baseline MSE
1/6 ≈ 0.167): two LSTM regressors, identical (same seed, same weights, same batches) except for
the effective forget bias b_ih_f + b_hh_f = 0 or 1 (``forget_bias=``), trained with the same
optimiser and budget; learning curves and the steps to reach validation MSE ≤ TARGET (a clear
win over the baseline).
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median

from .. import models, plots
from ..data import build_task
from ..train import fit
from .common import (
    Claim,
    StudyOutput,
    curve,
    log,
    pick,
    save_figure,
    sig,
    steps_to,
    table,
    write_results,
)

NAME = "forget-bias"
BIASES = (0.0, 1.0)
TARGET = 0.05  # val MSE (baseline 0.167)
inf = float("inf")


def run(profile: str = "default", seed: int = 0, out: Path | str = Path(".")) -> dict:
    started = time.perf_counter()
    out = Path(out)
    T = pick(profile, quick=20, default=50, full=100)
    steps = pick(profile, quick=60, default=1500, full=5000)
    hidden = pick(profile, quick=32, default=64, full=128)
    eval_every = pick(profile, quick=20, default=50, full=100)
    eval_batches = pick(profile, quick=2, default=4, full=10)
    lr, batch = 5e-3, 32
    task = build_task("adding", length=T)

    seeds = [seed + k for k in range(pick(profile, quick=1, default=3, full=5))]
    runs = {}
    for b in BIASES:
        per_seed = []
        for sd in seeds:
            log(f"  forget-bias: LSTM, forget bias {b:g}, seed {sd}")
            hist = fit(lambda b=b: models.for_task(task, "lstm", hidden_size=hidden,
                                                   num_layers=1, forget_bias=b),
                       task, steps=steps, batch_size=batch, lr=lr, clip=1.0,
                       eval_every=eval_every, eval_batches=eval_batches, seed=sd, progress=True)
            steps_axis, mse = curve(hist, "val_mse")
            per_seed.append({"seed": sd,
                             "steps_to_target": steps_to(hist, "val_mse", TARGET, higher=False),
                             "final_val_mse": sig(hist.final.get("mse"), 4),
                             "final_val_acc": sig(hist.final.get("acc"), 4),
                             "wall_time_s": sig(hist.wall_time_s, 3),
                             "curve": {"step": steps_axis, "val_mse": mse}})
        reached = [r["steps_to_target"] for r in per_seed]
        runs[f"{b:g}"] = {
            "forget_bias": b, "seeds": per_seed,
            "steps_to_target": reached,
            "median_steps_to_target": median([inf if v is None else v for v in reached]),
            "reached": sum(v is not None for v in reached),
            "median_final_val_mse": sig(median([r["final_val_mse"] if r["final_val_mse"]
                                                 is not None else inf for r in per_seed]), 4)}

    r0, r1 = runs["0"], runs["1"]
    s0, s1 = r0["median_steps_to_target"], r1["median_steps_to_target"]
    m0, m1 = r0["median_final_val_mse"] or inf, r1["median_final_val_mse"] or inf
    if s1 != s0:
        helps, how = s1 < s0, "compared the median steps to target over seeds"
    else:  # same median (e.g. neither reached it): lower final MSE by at least 10 %
        helps, how = m1 < 0.9 * m0, "equal median steps to target; compared median final MSE " \
            "(needs ≥ 10 % lower)"
    claims = [
        Claim("bias1_helps", f"Forget bias 1 helps the LSTM learn a long-range task (adding, "
              f"T={T}): it reaches val MSE ≤ {TARGET} sooner (median over {len(seeds)} seeds).",
              "bias 1: fewer steps to target (or ≥ 10 % lower final MSE)",
              {b: {"steps_to_target": runs[b]["steps_to_target"],
                   "median_final_val_mse": runs[b]["median_final_val_mse"]} for b in runs},
              helps, how + "; null/inf: never reached within the budget"),
        Claim("beats_baseline", f"An LSTM (forget bias 1) beats the memoryless baseline "
              f"(MSE {task.baseline:.3f}) on adding at T={T} within {steps} steps.",
              f"median final val MSE < 0.9 × {task.baseline:.3f}", r1["median_final_val_mse"],
              m1 < 0.9 * task.baseline),
    ]
    for r in runs.values():
        if r["median_steps_to_target"] == inf:
            r["median_steps_to_target"] = None
    fig = plots.plot_curves({f"lstm, forget bias {b}, seed {r['seed']}": (
                                r["curve"]["step"], r["curve"]["val_mse"])
                             for b in runs for r in runs[b]["seeds"]},
                            title=f"LSTM on adding (T={T}): forget bias 0 vs 1",
                            xlabel="step", ylabel="validation MSE", logy=True,
                            hline={"baseline 0.167": task.baseline, f"target {TARGET}": TARGET})
    results = {"T": T, "runs": runs, "baseline_mse": task.baseline, "target_mse": TARGET}
    config = {"task": {"name": "adding", **task.config()}, "model": "regressor",
              "backbone": "lstm", "hidden_size": hidden, "steps": steps, "batch_size": batch,
              "optimizer": "adam", "lr": lr, "clip": 1.0, "eval_every": eval_every,
              "forget_biases": list(BIASES), "seeds": seeds}
    notes = ["For each seed both runs share initial weights (apart from the forget bias) and "
             "batches; verdicts use the median over seeds.",
             "Budget per profile: quick T=20, 60 steps, 1 seed; default T=50, 1500 steps, "
             f"3 seeds; full T=100, 5000 steps, 5 seeds; this run: T={T}, {steps} steps."]
    tables = [table(f"LSTM on adding (T={T}): steps to val MSE ≤ {TARGET}",
                    ["forget bias", *[f"seed {sd}" for sd in seeds], "median steps",
                     "median final MSE"],
                    [[runs[b]["forget_bias"],
                      *[v if v is not None else "never" for v in runs[b]["steps_to_target"]],
                      runs[b]["median_steps_to_target"], runs[b]["median_final_val_mse"]]
                     for b in runs])]
    return write_results(out, StudyOutput(NAME, profile, seed, config, results, claims,
                                          [save_figure(fig, out, "learning_curves")], notes,
                                          tables), started)
