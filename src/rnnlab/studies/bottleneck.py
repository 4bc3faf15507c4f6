"""bottleneck: seq2seq with and without attention, token accuracy against source length.

The notes (Section 3.1 §6): the encoder must squeeze the whole source into one fixed-size vector,
so "seq2seq translation quality degrades sharply" with length (Cho et al. 2014); attention over
all encoder states removes the bottleneck (Bahdanau et al. 2015).

Per seed, on rnnlab.data's "reverse" task (output the source reversed, then EOS): two LSTM
encoder-decoders of the same width, without and with additive attention, built from the seed
(their embeddings and encoder are drawn first and are identical: one ``init_fingerprint``; the
decoders differ in shape), trained on the same batches of a mix of source lengths with the same
optimiser and budget, then evaluated per source length: token accuracy under teacher forcing
and exact-sequence accuracy of greedy decoding.
"""

from __future__ import annotations

from torch import nn

from .. import models, plots
from ..data import build_task
from ..losses import evaluate
from ..seeding import fingerprint
from ..train import fit
from .claims import above, brief, claim, source
from .common import CpuClock, Runs, Summary, curve, pick, sig, specs, table
from .stats import measurement

NAME = "bottleneck"
SEEDS = {"quick": 1, "default": 3, "full": 5}
VARIANTS = {"no-attention": None, "attention": "additive"}
VOCAB = 10
SRC = source("seq2seq", "§6 The Information Bottleneck",
             "Cho et al. 2014; Sutskever et al. 2014; Bahdanau et al. 2015")
QUOTE = ("The encoder must compress an entire source sentence … into a single vector of fixed "
         "dimensionality … as sentence length increases … Cho et al. (2014) showed that seq2seq "
         "translation quality degrades sharply for sentences longer than about 20 words. … The "
         "attention mechanism solves the bottleneck by allowing the decoder to look back at all "
         "encoder hidden states.")
INTRO = {
    "title": "The seq2seq bottleneck",
    "question": "Does an encoder-decoder without attention lose accuracy as the source grows, "
                "and does attention remove the loss?",
    "quote": QUOTE, "source": SRC,
    "method": "Two LSTM encoder-decoders of width 64 learn to reverse sequences of 2 to 20 "
              "symbols, one reading only the encoder's final state, one attending over all "
              "encoder states; accuracy per source length.",
}


def budget(profile: str) -> dict:
    return {"max_len": pick(profile, quick=8, default=20),
            "lengths": pick(profile, quick=[2, 8], default=[2, 5, 10, 15, 20]),
            "steps": pick(profile, quick=40, default=600, full=1500),
            "hidden": pick(profile, quick=16, default=64),
            "eval_every": pick(profile, quick=20, default=100),
            "eval_batches": pick(profile, quick=1, default=4, full=8), "lr": 5e-3}


def plan(profile: str, seeds: list[int]):
    b = budget(profile)
    cost = {"no-attention": 0.5 if profile == "quick" else b["steps"] * 0.012,
            "attention": 0.8 if profile == "quick" else b["steps"] * 0.04}
    return specs(NAME, profile, seeds, {k: {**b, "attention": a} for k, a in VARIANTS.items()},
                 cost)


def run_one(spec) -> dict:
    s = spec.settings
    task = build_task("reverse", min_len=2, max_len=s["max_len"], vocab=VOCAB)
    shared = {}

    def build():
        m = models.for_task(task, "lstm", hidden_size=s["hidden"], num_layers=1,
                            attention=s["attention"])
        shared["fingerprint"] = fingerprint(nn.ModuleList([m.src_embedding, m.tgt_embedding,
                                                           m.encoder]))
        return m

    hist = fit(build, task, steps=s["steps"], batch_size=32, lr=s["lr"], clip=1.0,
               eval_every=s["eval_every"], eval_batches=s["eval_batches"], seed=spec.seed,
               callbacks=[CpuClock()])
    per_length = {}
    for n in s["lengths"]:
        m = evaluate(hist.model, build_task("reverse", min_len=n, max_len=n, vocab=VOCAB),
                     batches=s["eval_batches"], batch_size=64)
        per_length[str(n)] = {"acc": sig(m.get("acc"), 4), "seq_acc": sig(m.get("seq_acc"), 4)}
    return {"init_fingerprint": shared["fingerprint"], "arm_fingerprint": hist.init_fingerprint,
            "params": hist.model.num_parameters(), "final_val_acc": sig(hist.final.get("acc"), 4),
            "per_length": per_length, "curve": curve(hist, "val_acc")}


def summarise(runs: Runs, profile: str, seeds: list[int]) -> Summary:
    b = budget(profile)
    L = b["lengths"]
    s0, sL = str(L[0]), str(L[-1])
    acc = lambda arm, n: runs.values(arm, lambda r: r["per_length"][n]["acc"], seeds)
    sub = lambda a, c: [x - y if x is not None and y is not None else None
                        for x, y in zip(a, c, strict=True)]
    drop_na = sub(acc("no-attention", s0), acc("no-attention", sL))
    drop_at = sub(acc("attention", s0), acc("attention", sL))
    claims = [
        claim("no_attention_degrades", f"Without attention, token accuracy falls by more than "
              f"10 points from length {s0} to length {sL}.", QUOTE, SRC,
              above(0.1, f"mean over seeds of acc({s0}) − acc({sL}) > 0.10"),
              "degrades sharply with length",
              measurement(drop_na, seeds, unit="accuracy points"), arms=("no-attention",)),
        claim("attention_better_long", f"With attention the decoder is more accurate on the "
              f"longest sources (length {sL}).", QUOTE, SRC,
              above(0, f"mean over seeds of attention − no-attention accuracy at {sL} > 0"),
              "higher", measurement(sub(acc("attention", sL), acc("no-attention", sL)), seeds,
                                    unit="accuracy points"), arms=tuple(VARIANTS)),
        claim("attention_flatter", "Attention removes the bottleneck: its accuracy falls less "
              "with length than without attention.", QUOTE, SRC,
              above(0, "mean over seeds of drop(no attention) − drop(attention) > 0"),
              "a smaller drop", measurement(sub(drop_na, drop_at), seeds,
                                             unit="accuracy points"), arms=tuple(VARIANTS)),
    ]
    series_acc, series_seq = {}, {}
    for k in VARIANTS:
        ok = list(runs.ok(k).values())
        if not ok:
            continue
        rows = [[r["per_length"][str(n)]["acc"] for n in L] for r in ok]
        ms = [measurement([r[i] for r in rows], list(range(len(rows))), bounds=(0, 1))
              for i in range(len(L))]
        series_acc[k] = {"x": L, "y": [m["mean"] for m in ms], "runs": rows,
                         "lo": [(m["interval"] or [m["mean"]] * 2)[0] for m in ms],
                         "hi": [(m["interval"] or [m["mean"]] * 2)[1] for m in ms],
                         "color": "tab:purple" if k == "attention" else "tab:blue"}
        series_seq[k] = {"x": L, "color": series_acc[k]["color"],
                         "y": [measurement([r["per_length"][str(n)]["seq_acc"] for r in ok],
                                           list(range(len(ok))))["mean"] for n in L],
                         "runs": [[r["per_length"][str(n)]["seq_acc"] for n in L] for r in ok]}
    fig = plots.plot_panels([
        {"title": "token accuracy (teacher forcing)", "xlabel": "source length",
         "ylabel": "accuracy", "hline": {"chance 0.1": 1 / VOCAB}, "series": series_acc,
         "xticks": L, "ylim": (0, 1.02)},
        {"title": "whole sequences right (greedy decoding)", "xlabel": "source length",
         "ylabel": "sequence accuracy", "series": series_seq, "xticks": L, "ylim": (0, 1.02)},
    ], title=f"The seq2seq bottleneck: accuracy against source length ({len(seeds)} seeds)")
    rows = [[n, *[brief(measurement(acc(k, str(n)), seeds, bounds=(0, 1))) for k in VARIANTS],
             *[brief(measurement(runs.values(k, lambda r, n=n: r["per_length"][str(n)]
                                             ["seq_acc"], seeds), seeds, bounds=(0, 1)))
               for k in VARIANTS]]
            for n in L]
    fps = {s: [runs.ok(k).get(s, {}).get("init_fingerprint") for k in VARIANTS] for s in seeds}
    return Summary(
        claims, [("by_length", fig,
                  "Left: token accuracy per source length, mean over seeds with its 95 % band "
                  "(faint: single seeds). Without attention (blue) the curve falls as the "
                  "source outgrows what one state vector can hold; with attention (purple) it "
                  "stays high. Right: the stricter whole-sequence accuracy of greedy decoding "
                  "shows the same gap, larger.")],
        [table("Accuracy by source length (mean [95 % interval])",
               ["source length", "token acc, no attention", "token acc, attention",
                "seq acc, no attention", "seq acc, attention"], rows)],
        [f"Both models train on source lengths uniform in [2, {b['max_len']}] for "
         f"{b['steps']} steps (quick 40, default 600, full 1500), batch 32, Adam lr 5e-3, "
         "clip 1, and are evaluated at fixed lengths.",
         "Pairing: within a seed both arms draw the same embeddings and encoder (equal "
         "init_fingerprint: " + str(all(len(set(f)) == 1 for f in fps.values() if None not in f))
         + ") and see the same batches; the decoders differ (the attention decoder also reads "
           "the context vector)."],
        {"task": {"name": "reverse", "vocab": VOCAB, "min_len": 2, **b}, "backbone": "lstm",
         "attention": VARIANTS}, {})

