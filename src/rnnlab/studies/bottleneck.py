"""bottleneck: seq2seq with and without attention, token accuracy against source length.

The notes (rnns-vanishing-gradients-seq2seq.txt §6): the encoder must squeeze the whole source into
one fixed-size vector, so "seq2seq translation quality degrades sharply" with length (Cho et al.
2014); attention over all encoder states removes the bottleneck (Bahdanau et al. 2015).

Measured here on rnnlab.data's "reverse" task (output the source reversed, then EOS): two LSTM
encoder-decoders of the same size, without attention and with additive attention, trained on a
mix of source lengths with the same optimiser and budget, then evaluated per source length:
token accuracy under teacher forcing ("acc") and exact-sequence accuracy of greedy decoding
("seq_acc").
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import models, plots
from ..data import build_task
from ..losses import evaluate
from ..train import fit
from .common import Claim, StudyOutput, curve, log, pick, save_figure, sig, table, write_results

NAME = "bottleneck"
VARIANTS = {"no_attention": None, "attention": "additive"}


def run(profile: str = "default", seed: int = 0, out: Path | str = Path(".")) -> dict:
    started = time.perf_counter()
    out = Path(out)
    min_len, max_len = 2, pick(profile, quick=8, default=24, full=40)
    eval_lengths = pick(profile, quick=[2, 8], default=[2, 6, 12, 18, 24],
                        full=[2, 5, 10, 20, 30, 40])
    steps = pick(profile, quick=40, default=800, full=5000)
    hidden = pick(profile, quick=16, default=64, full=128)
    eval_every = pick(profile, quick=20, default=100, full=200)
    eval_batches = pick(profile, quick=1, default=4, full=10)
    lr, vocab = 5e-3, 10
    task = build_task("reverse", min_len=min_len, max_len=max_len, vocab=vocab)

    per_length, curves, summary = {}, {}, {}
    for label, attn in VARIANTS.items():
        log(f"  bottleneck: seq2seq {label}")
        hist = fit(lambda a=attn: models.for_task(task, "lstm", hidden_size=hidden,
                                                  num_layers=1, attention=a),
                   task, steps=steps, batch_size=32, lr=lr, clip=1.0, eval_every=eval_every,
                   eval_batches=eval_batches, seed=seed, progress=True)
        model = hist.model
        st, acc = curve(hist, "val_acc")
        curves[label] = {"step": st, "val_acc": acc}
        summary[label] = {"final_val_acc": sig(hist.final.get("acc"), 4),
                          "final_seq_acc": sig(hist.final.get("seq_acc"), 4),
                          "params": model.num_parameters(),
                          "wall_time_s": sig(hist.wall_time_s, 3)}
        for L in eval_lengths:
            m = evaluate(model, build_task("reverse", min_len=L, max_len=L, vocab=vocab),
                         batches=eval_batches, batch_size=64)
            per_length.setdefault(str(L), {})[label] = {"acc": sig(m.get("acc"), 4),
                                                        "seq_acc": sig(m.get("seq_acc"), 4)}

    results = {"eval_lengths": eval_lengths, "per_length": per_length, "models": summary,
               "curves": curves, "chance_token_acc": 1 / vocab}
    claims = make_claims(results, eval_lengths)
    figs = [
        save_figure(plots.plot_panels([
            {"title": "token accuracy (teacher forcing)", "xlabel": "source length",
             "ylabel": "accuracy", "hline": {"chance": 1 / vocab},
             "series": {k: (eval_lengths, [per_length[str(L)][k]["acc"] for L in eval_lengths])
                        for k in VARIANTS}},
            {"title": "exact sequences (greedy decoding)", "xlabel": "source length",
             "ylabel": "sequence accuracy",
             "series": {k: (eval_lengths, [per_length[str(L)][k]["seq_acc"]
                                           for L in eval_lengths]) for k in VARIANTS}},
        ], title="The seq2seq bottleneck: accuracy against source length"), out, "by_length"),
        save_figure(plots.plot_curves({k: (curves[k]["step"], curves[k]["val_acc"])
                                       for k in VARIANTS},
                                      title="Validation token accuracy (mixed lengths)",
                                      xlabel="step", ylabel="accuracy"), out, "learning_curves"),
    ]
    config = {"task": {"name": "reverse", **task.config()}, "backbone": "lstm",
              "hidden_size": hidden, "attention": VARIANTS, "steps": steps, "batch_size": 32,
              "optimizer": "adam", "lr": lr, "clip": 1.0, "eval_lengths": eval_lengths,
              "seed": seed}
    notes = [f"Both models train on source lengths uniform in [{min_len}, {max_len}] for {steps} "
             "steps (quick 40, default 800, full 5000) and are evaluated at fixed lengths."]
    tables = [table("Accuracy by source length", ["source length", "token acc, no attention",
                                                  "token acc, attention", "seq acc, no attention",
                                                  "seq acc, attention"],
                    [[L, per_length[str(L)]["no_attention"]["acc"],
                      per_length[str(L)]["attention"]["acc"],
                      per_length[str(L)]["no_attention"]["seq_acc"],
                      per_length[str(L)]["attention"]["seq_acc"]] for L in eval_lengths])]
    return write_results(out, StudyOutput(NAME, profile, seed, config, results, claims, figs,
                                          notes, tables), started)


def make_claims(r, lengths) -> list[Claim]:
    pl = r["per_length"]
    s, l_ = str(lengths[0]), str(lengths[-1])
    na = {L: pl[str(L)]["no_attention"]["acc"] for L in lengths}
    at = {L: pl[str(L)]["attention"]["acc"] for L in lengths}
    drop_na = (na[lengths[0]] or 0) - (na[lengths[-1]] or 0)
    drop_at = (at[lengths[0]] or 0) - (at[lengths[-1]] or 0)
    return [
        Claim("no_attention_degrades", "Without attention, seq2seq accuracy degrades with source "
              f"length: token accuracy at length {l_} is more than 0.1 below length {s}.",
              "drop > 0.1", {"by_length": na, "drop": sig(drop_na, 3)}, drop_na > 0.1),
        Claim("attention_better_long", f"With attention the decoder does better on long sources "
              f"(length {l_}).", "attention acc > no-attention acc at the longest length",
              {"attention": at[lengths[-1]], "no_attention": na[lengths[-1]]},
              (at[lengths[-1]] or 0) > (na[lengths[-1]] or 0)),
        Claim("attention_flatter", "Attention removes the bottleneck: its accuracy drops less "
              "with length than without attention.", "drop(attention) < drop(no attention)",
              {"drop_attention": sig(drop_at, 3), "drop_no_attention": sig(drop_na, 3)},
              drop_at < drop_na),
    ]
