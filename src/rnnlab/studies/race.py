"""race: the notes' "Lab 03" table — RNN vs LSTM vs GRU vs attention on §A13 next-token prediction.

The notes (Lesson 04, "What §A13 specifically shows"):

    Model           | Steps to 90% val acc | Final val acc | Train wall time
    RNN (h=64)      | did not converge     | 28%           | 5 min × no-go
    LSTM (h=64)     | 800                  | 92%           | 8 min
    Attention (1L)  | 200                  | 96%           | 3 min

"attention converges faster and to higher accuracy on the same compute budget" (numbers marked
approximate by the notes). Measured on rnnlab.data's a13 task (the tense grammar built around
"she will work tomorrow ."): one-layer language models of the same width, the same optimiser,
batch and step budget, sentences with a filler of F ∈ [3, F_max] tokens. "Accuracy" is the
*dependency* accuracy — the tokens fixed by a distant cue — reported apart for its two kinds:
*tense* (the verb group fixes the closing adverb; 3 choices) and *agreement* (the subject fixes
the possessive after "with"; 7 choices, the longer distance), since the overall next-word
accuracy of this grammar is capped far below 90 % by its free choices, and an average of the two
kinds can hide one solved and one at chance. Two extra LSTM arms try the forget-gate bias as a
factor (1 and 3; the same initial weights as the plain LSTM of their seed otherwise).

Learning rates: the default profile uses one per model (``LR``, from the full profile's
selection); the full profile trains every model at every rate of ``LR_GRID`` and picks, per model
and seed, the rate with the best dependency accuracy on a separate selection split (fresh
sentences from their own seed, never the validation batches the table reports).
"""

from __future__ import annotations

import torch

from .. import models
from ..data import build_task
from ..data.a13 import POSSESSIVE
from ..losses import evaluate
from ..seeding import fingerprint
from ..train import fit
from .common import CpuClock, generator, pick, set_forget_bias, sig, specs
from .race_claims import ALL, LR, LR_GRID, TARGET
from .race_claims import summarise as summarise  # the claims, tables and figures

NAME = "race"
SEEDS = {"quick": 1, "default": 3, "full": 8}
SELECTION_SEED = 1_000_003  # lr-selection split: its own sentences, not the reported val batches
INTRO = {
    "title": "The Lab 03 race on §A13",
    "question": "Trained the same way on the same next-token task, does attention reach 90 % "
                "sooner, end higher and take less time than the LSTM, while the vanilla RNN "
                "never gets there?",
    "quote": "RNN (h=64): did not converge, 28 % · LSTM (h=64): 800 steps to 90 %, 92 %, 8 min · "
             "Attention (1L): 200 steps, 96 %, 3 min. … The headline is: attention converges "
             "faster and to higher accuracy on the same compute budget.",
    "source": {"lesson": "Lesson 04, “Side-by-side gradient flow: RNN vs LSTM vs attention on "
                         "the §A13 corpus” (side-by-side-gradient-flow)",
               "section": "What §A13 specifically shows (Lab 03 table)",
               "cites": "Hochreiter & Schmidhuber 1997; Vaswani et al. 2017"},
    "method": "One-layer language models of width 64 on the a13 grammar (filler of 3 to 16 "
              "tokens between cue and target), the same budget for each; accuracy on the "
              "tokens a distant cue decides, tense and agreement apart.",
}


def budget(profile: str) -> dict:
    """The full profile keeps the task and adds what decides the default's open claims: more
    seeds, twice the steps, and the learning-rate grid."""
    return {"hidden": pick(profile, quick=32, default=64),
            "steps": pick(profile, quick=40, default=1000, full=2000),
            "f_max": pick(profile, quick=8, default=16),
            "distances": pick(profile, quick=[3, 8], default=[3, 6, 10, 16]),
            "eval_every": pick(profile, quick=20, default=50),
            "eval_batches": pick(profile, quick=1, default=4), "batch": 32}


def plan(profile: str, seeds: list[int]):
    b = budget(profile)
    arms, cost = {}, {}
    per_step = {"rnn": 5.5, "lstm": 5.5, "gru": 9, "attention": 11, "mingru": 7,
                "lru": 7}  # ms per step, 1 thread
    for m in ALL:
        grid = LR_GRID if profile == "full" else [LR[m]]
        for lr in grid:
            name = m if len(grid) == 1 else f"{m}@{lr:g}"
            arms[name] = {**b, "model": m, "lr": lr}
            cost[name] = 0.5 if profile == "quick" else per_step[m] * b["steps"] / 1000 + 1
    for fb in (1.0, 3.0):
        arms[f"lstm-fb{fb:g}"] = {**b, "model": "lstm", "lr": LR["lstm"], "forget_bias": fb}
        cost[f"lstm-fb{fb:g}"] = cost["lstm"] if "lstm" in cost else cost[f"lstm@{LR['lstm']:g}"]
    return specs(NAME, profile, seeds, arms, cost)


def by_type(model, task, batches: int, seed: int) -> dict:
    """Dependency accuracy overall and by kind (tense / agreement) on fixed batches."""
    poss = torch.tensor([task.index[w] for w in POSSESSIVE.values()])
    g = generator(seed)
    hits = {"tense": [0, 0], "agreement": [0, 0]}
    was = model.training
    model.eval()
    with torch.no_grad():
        for _ in range(batches):
            b = task.batch("val", 64, g)
            out = model(b.x)
            logits = out[0] if isinstance(out, tuple) else out
            ok = logits.argmax(-1) == b.y
            dep = b.dep_mask & b.mask
            agree = dep & torch.isin(b.y, poss)
            for k, sel in (("agreement", agree), ("tense", dep & ~agree)):
                hits[k][0] += int((ok & sel).sum())
                hits[k][1] += int(sel.sum())
    model.train(was)
    acc = {k: (c / n if n else None) for k, (c, n) in hits.items()}
    total = sum(n for _, n in hits.values())
    acc["dep"] = sum(c for c, _ in hits.values()) / total if total else None
    return acc


class _ByType:
    """A fit callback: tense and agreement accuracy at every evaluation (the same batches)."""

    def __init__(self, task, batches, seed):
        self.task, self.batches, self.seed = task, batches, seed

    def on_step(self, trainer, record, last):
        if "val_loss" in record:
            acc = by_type(trainer.model, self.task, self.batches, self.seed + 1)
            record["val_tense"], record["val_agreement"] = acc["tense"], acc["agreement"]


def run_one(spec) -> dict:
    s = spec.settings
    task = build_task("a13", distance=[3, s["f_max"]])
    extra = {"num_heads": 1} if s["model"] == "attention" else {}
    shared = {}

    def build():
        m = models.for_task(task, s["model"], hidden_size=s["hidden"], num_layers=1, **extra)
        shared["fingerprint"] = fingerprint(m)
        return set_forget_bias(m, s["forget_bias"]) if s.get("forget_bias") else m

    clock = CpuClock()
    hist = fit(build, task, steps=s["steps"], batch_size=s["batch"], lr=s["lr"], clip=1.0,
               eval_every=s["eval_every"], eval_batches=s["eval_batches"], seed=spec.seed,
               callbacks=[_ByType(task, s["eval_batches"], spec.seed), clock])
    ev = hist.evals
    first = lambda key: next((r for r in ev if (r.get(key) or 0) >= TARGET), None)
    hit = first("val_dep_acc")
    model = hist.model
    final = by_type(model, task, s["eval_batches"], spec.seed + 1)
    dist = {}
    for F in s["distances"]:
        a = by_type(model, build_task("a13", distance=F), s["eval_batches"], spec.seed + 2)
        dist[str(F)] = {k: sig(v, 4) for k, v in a.items()}
    sel = evaluate(model, task, batches=s["eval_batches"], batch_size=64,
                   generator=generator(SELECTION_SEED))
    return {"init_fingerprint": shared["fingerprint"], "params": model.num_parameters(),
            "lr": s["lr"], "forget_bias": s.get("forget_bias"),
            "steps_to_target": hit["step"] if hit else None,
            "cpu_to_target_s": sig(hit["cpu_s"], 4) if hit else None,
            "steps_to_target_tense": (first("val_tense") or {}).get("step"),
            "steps_to_target_agreement": (first("val_agreement") or {}).get("step"),
            "final_dep_acc": sig(final["dep"], 4), "final_tense": sig(final["tense"], 4),
            "final_agreement": sig(final["agreement"], 4),
            "final_val_acc": sig(hist.final.get("acc"), 4),
            "train_cpu_s": sig(ev[-1]["cpu_s"] if ev else None, 4),
            "by_distance": dist, "selection_dep_acc": sig(sel.get("dep_acc"), 4),
            "selection_loss": sig(sel.get("loss"), 4), "stopped": hist.stopped,
            "curve": {"step": [r["step"] for r in ev],
                      "dep": [sig(r.get("val_dep_acc"), 4) for r in ev],
                      "tense": [sig(r.get("val_tense"), 4) for r in ev],
                      "agreement": [sig(r.get("val_agreement"), 4) for r in ev]}}
