"""long-range: the adding problem and copy memory over growing T, and the "long review".

The published pattern (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016), and the notes'
take on it (Day 3 §2.2: "Context from 50+ steps ago is effectively invisible"; Section 3.1: "In
practice, vanilla RNNs struggle with dependencies beyond roughly 10 to 20 time steps"): an LSTM
solves the adding problem at T = 100 in a few thousand steps, a tanh RNN stays at the memoryless
baseline (MSE 0.167 for adding; 10·ln 8/(T+20) nats for copy memory). The notes' "long review"
case (Section 3.1): a vanilla RNN classifier loses accuracy on long inputs (89 % short, 61 % on
50+ words); a bidirectional LSTM recovers it (84 %).

Per seed, a tanh RNN and an LSTM of the same width train with the same optimiser and step budget
on the same batches; a
model "beats the baseline" when its final validation loss is below 0.9 × the baseline. The
review task (rnnlab.data "classify", ``position="random"``: the label is set by cue tokens that
follow a marker at a uniformly random position; the other tokens, cue tokens of every class
included, say nothing about it) trains on a mix of lengths and is evaluated per length. A
negative claim ("the RNN stays at the baseline") is only judged when the LSTM — the positive
control — learned the same task at the same budget; otherwise the budget cannot decide.
"""

from __future__ import annotations

from .. import models
from ..data import build_task
from ..losses import evaluate
from ..seeding import fingerprint
from ..train import fit
from .common import CpuClock, pick, sig, specs
from .long_range_claims import summarise as summarise  # the claims, tables and figures
from .long_range_scan import solve_target, solved_at

NAME = "long-range"
SEEDS = {"quick": 1, "default": 3, "full": 5}
INTRO = {
    "title": "Long-range memory: adding, copy, the long review",
    "question": "Does the LSTM learn what lies 50–100 steps back while the vanilla RNN stays at "
                "the memoryless baseline, and does a vanilla RNN classifier lose accuracy on "
                "long reviews that a bidirectional LSTM recovers?",
    "quote": "When ∂L/∂h_t ≈ 0 for small t: the network cannot learn from early tokens in long "
             "sequences; context from 50+ steps ago is effectively invisible.",
    "source": {"lesson": "Day 3, “RNN/LSTM Essentials” (rnn-lstm-essentials)",
               "section": "§2.2 What Vanishing Gradients Mean in Practice",
               "cites": "Hochreiter & Schmidhuber 1997; Bengio, Simard & Frasconi 1994"},
    "method": "Adding and copy memory at growing T and a review classifier with the cue at a "
              "random position, the RNN and the LSTM trained alike on the same batches.",
}


def budget(profile: str) -> dict:
    """The full profile trains long enough to decide what the default cannot (adding at
    T = 100: 5000 steps; copy: 4000), on more seeds; it changes nothing else. The scan
    recurrences (minGRU, the LRU) run adding at the longest T in every profile; copy memory and
    selective copy (with an LSTM beside them) only in ``quick`` (the plumbing) and ``full``: the
    default's ≤ 10 minutes on two cores cannot hold them at a budget that decides anything.
    They stop once solved (``long_range_scan.SOLVE``), which changes no step count."""
    return {
        "scan_models": ["mingru", "lru"],
        "scan_copy": pick(profile, quick=True, default=False, full=True),
        "selective": pick(profile, quick={"length": 12, "tokens": 2, "steps": 40},
                          default=None,
                          full={"length": 64, "tokens": 8, "steps": 3000}),
        "adding_T": pick(profile, quick=[10], default=[25, 50, 100]),
        "adding_steps": pick(profile, quick={"10": 40},
                             default={"25": 1000, "50": 1000, "100": 2000},
                             full={"25": 2000, "50": 3000, "100": 5000}),
        "copy_T": pick(profile, quick=[5], default=[10, 30]),
        "copy_steps": pick(profile, quick=40, default=1000, full=4000),
        "review_lengths": pick(profile, quick=[5, 30], default=[5, 25, 50, 100]),
        "review_steps": pick(profile, quick=40, default=400),
        "hidden": pick(profile, quick=16, default=64),
        "review_hidden": pick(profile, quick=16, default=32),
        "eval_every": pick(profile, quick=20, default=100),
        "eval_batches": pick(profile, quick=1, default=4), "lr": 5e-3}


def plan(profile: str, seeds: list[int]):
    b = budget(profile)
    quick = profile == "quick"
    arms, cost = {}, {}
    ms_step = {"rnn": 0.05, "lstm": 0.05, "gru": 0.15, "attention": 0.22}  # ms per step per T
    adding_models = ("rnn", "lstm")
    for T in b["adding_T"]:
        steps = b["adding_steps"][str(T)]
        for m in adding_models:
            arms[f"adding-T{T}-{m}"] = {"task": "adding", "T": T, "model": m, "steps": steps}
            cost[f"adding-T{T}-{m}"] = 0.4 if quick else steps * (2 + ms_step[m] * T) / 1000
    for T in b["copy_T"]:
        for m in ("rnn", "lstm"):
            arms[f"copy-T{T}-{m}"] = {"task": "copy", "T": T, "model": m,
                                      "steps": b["copy_steps"]}
            cost[f"copy-T{T}-{m}"] = 0.4 if quick else b["copy_steps"] * (3 + 0.07 * T) / 1000
    for m, (backbone, bi) in {"rnn": ("rnn", False), "lstm": ("lstm", False),
                              "bilstm": ("lstm", True)}.items():
        arms[f"review-{m}"] = {"task": "review", "model": backbone, "bidirectional": bi,
                               "steps": b["review_steps"]}
        cost[f"review-{m}"] = 0.5 if quick else b["review_steps"] * (10, 20, 38)[
            ("rnn", "lstm", "bilstm").index(m)] / 1000
    scan_ms = {"lstm": 9, "mingru": 11, "lru": 10}  # ms per step, selective copy, 1 thread
    for m in b["scan_models"]:
        T = b["adding_T"][-1]
        arms[f"adding-T{T}-{m}"] = {"task": "adding", "T": T, "model": m,
                                    "steps": b["adding_steps"][str(T)], "stop": True}
        cost[f"adding-T{T}-{m}"] = 0.4 if quick else b["adding_steps"][str(T)] * 0.01
        if b["scan_copy"]:
            T = b["copy_T"][-1]
            arms[f"copy-T{T}-{m}"] = {"task": "copy", "T": T, "model": m,
                                      "steps": b["copy_steps"], "stop": True}
            cost[f"copy-T{T}-{m}"] = 0.4 if quick else b["copy_steps"] * 0.009
    sel = b["selective"]
    for m in ("lstm", *b["scan_models"]) if sel else ():
        arms[f"selective-L{sel['length']}-{m}"] = {"task": "selective-copy", "model": m,
                                                   "T": sel["length"], "tokens": sel["tokens"],
                                                   "steps": sel["steps"], "stop": True}
        cost[f"selective-L{sel['length']}-{m}"] = 0.4 if quick else sel["steps"] * scan_ms[
            m] / 1000
    common = {k: b[k] for k in ("hidden", "review_hidden", "eval_every", "eval_batches", "lr",
                                "review_lengths")}
    return specs(NAME, profile, seeds, {a: {**common, **s} for a, s in arms.items()}, cost)


def run_one(spec) -> dict:
    s = spec.settings
    if s["task"] == "review":
        L = s["review_lengths"]
        task = build_task("classify", length=L[-1], min_length=L[0])
        hidden, extra = s["review_hidden"], {"bidirectional": s["bidirectional"]}
    else:
        task = (build_task("adding", length=s["T"]) if s["task"] == "adding" else
                build_task("selective-copy", length=s["T"], tokens=s["tokens"])
                if s["task"] == "selective-copy" else build_task("copy", delay=s["T"]))
        hidden, extra = s["hidden"], {}
    shared = {}

    def build():
        m = models.for_task(task, s["model"], hidden_size=hidden, num_layers=1, **extra)
        shared["fingerprint"] = fingerprint(m)
        return m

    metric = {"adding": "mse", "copy": "loss", "review": "acc",
              "selective-copy": "dep_acc"}[s["task"]]
    stop = {}
    if s.get("stop"):  # the scan arms end once solved (long_range_scan.SOLVE)
        solve_metric, target = solve_target(s["task"], task.baseline)
        stop = {"target": target, "target_metric": solve_metric}
    hist = fit(build, task, steps=s["steps"], batch_size=32, lr=s["lr"], clip=1.0,
               eval_every=s["eval_every"], eval_batches=s["eval_batches"], seed=spec.seed,
               callbacks=[CpuClock()], **stop)
    ev = hist.evals
    out = {"init_fingerprint": shared["fingerprint"], "baseline": sig(task.baseline, 4),
           "final": sig(hist.final.get(metric), 4), "stopped": hist.stopped,
           "curve": {"step": [r["step"] for r in ev],
                     "val": [sig(r.get(f"val_{metric}"), 4) for r in ev]}}
    out["steps_to_solve"] = solved_at(out["curve"], s["task"], out["baseline"])
    if s["task"] in ("copy", "selective-copy"):
        out["final_dep_acc"] = sig(hist.final.get("dep_acc"), 4)
    if s["task"] == "review":
        out["acc_by_length"] = {}
        for n in s["review_lengths"]:
            m = evaluate(hist.model, build_task("classify", length=n, min_length=n),
                         batches=s["eval_batches"], batch_size=64)
            out["acc_by_length"][str(n)] = sig(m.get("acc"), 4)
    return out
