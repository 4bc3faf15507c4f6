"""parallelism's claims, tables and figures, from the timing runs of ``parallelism.py``."""

from __future__ import annotations

import math

from .. import plots
from .claims import above, below, brief, claim, source, within
from .common import Runs, Summary, sig, table
from .stats import log_interval, loglog_slope, measurement

S7 = source("seq2seq", "§7 Sequential Computation: The Parallelism Problem (Code Fragment 3.1.4)",
            "Vaswani et al. 2017")
COST = source("side", "What attention does not give you for free", "Vaswani et al. 2017")
QUOTE = ("seq_len, batch, inp, hid = 512, 32, 256, 256 … rnn = nn.LSTM(inp, hid) … linear = "
         "nn.Linear(inp, hid) … The feedforward layer is over 14 times faster, and this gap "
         "widens dramatically on GPUs and with longer sequences.")
ONE_THREAD = ("one CPU thread executes one operation at a time, so no layer runs in parallel "
              "here: the ratio measures arithmetic and how efficiently it is done")


def _derive(r: dict) -> dict:
    """The time ratio and GFLOP/s of the notes' configuration, from a run's raw times."""
    t_lstm, t_lin = r["lstm_forward_s"], r["linear_forward_s"]
    return {**r, "ratio": t_lstm / t_lin, "lstm_gflops": r["flops"]["lstm"] / t_lstm / 1e9,
            "linear_gflops": r["flops"]["linear"] / t_lin / 1e9}


def summarise(runs: Runs, profile: str, seeds: list[int]) -> Summary:
    runs = Runs([_derive(r) if r.get("status") == "ok" and r["arm"] == "timing" else r
                 for r in runs.all])
    s_claims, s_figures, s_tables, s_notes = scan_part(runs, seeds)
    ok = runs.ok("timing")
    v = lambda key: runs.values("timing", key, seeds)
    first = next(iter(ok.values()), {})
    n = first.get("notes_config", {})
    L = first.get("lengths", [])
    notes_cfg = n == {"B": 32, "T": 512, "d": 256}
    flop_ratio = 8.0
    share = [math.log(flop_ratio) / math.log(r) if r and r > 1 else None for r in v("ratio")]
    per_flop = [r / flop_ratio if r else None for r in v("ratio")]
    half = len(L) // 2
    slope = lambda k, lo: [loglog_slope(L[lo:], r["fwd_bwd_s"][k][lo:]) if r else None
                           for r in (ok.get(s) for s in seeds)]
    short = [math.log10(r["fwd_bwd_s"]["lstm"][0] / r["fwd_bwd_s"]["attention"][0]) if r
             else None for r in (ok.get(s) for s in seeds)]
    claims = [
        claim("feedforward_14x", f"A feed-forward layer is over 14 times faster than an LSTM "
              f"layer, forward, at the notes' configuration (B = {n.get('B')}, T = "
              f"{n.get('T')}, width {n.get('d')}{'' if notes_cfg else '; not the notes: quick'}"
              "), one CPU thread.", QUOTE, S7,
              above(14, "LSTM / Linear forward time (geometric mean over seeds) > 14"),
              "> 14×", measurement(v("ratio"), seeds, scale="log"), arms=("timing",),
              note=f"{ONE_THREAD}. LSTM {brief(measurement(v('lstm_forward_s'), seeds))} s, "
                   f"Linear {brief(measurement(v('linear_forward_s'), seeds))} s per call."),
        claim("gap_is_arithmetic", "On one thread most of the LSTM/Linear gap is arithmetic: "
              "the LSTM does 8× the FLOPs, and ln 8 is more than half of ln(time ratio); the "
              "rest is doing them as T small products in sequence.", QUOTE, S7,
              above(0.5, "ln(FLOP ratio 8) / ln(time ratio) > 0.5"), "> 0.5",
              measurement(share, seeds, unit="share of the log ratio"), arms=("timing",),
              kind="finding",
              note="time per FLOP, LSTM / Linear: " + brief(measurement(per_flop, seeds,
                                                                        scale="log"))
                   + "; GFLOP/s LSTM " + brief(measurement(v("lstm_gflops"), seeds))
                   + ", Linear " + brief(measurement(v("linear_gflops"), seeds))
                   + ". A GPU or many threads would add the parallelism the notes describe."),
        claim("lstm_linear_in_T", f"The LSTM's sequential loop costs O(T): forward + backward "
              f"time grows linearly with T (T ≥ {L[half] if L else '?'}).",
              "For a sequence of length n, an RNN requires O(n) sequential operations", S7,
              within(0.8, 1.2, "least-squares log-log slope of time against T within [0.8, "
                               "1.2]"), "slope 1", measurement(slope("lstm", half), seeds),
              arms=("timing",)),
        claim("attention_quadratic", f"Attention's O(T²) term takes over at long T: over T = "
              f"{', '.join(map(str, L[-3:]))} its time grows faster than linearly, towards T².",
              "It's O(T²) in memory and compute (Phase 15). For very long sequences, this "
              "dominates.", COST, above(1.5, "log-log slope over the three longest T > 1.5"),
              "slope → 2", measurement(slope("attention", len(L) - 3), seeds),
              arms=("timing",)),
        claim("attention_faster_short", f"At short T (T = {L[0] if L else '?'}) one attention "
              "layer (all positions at once) is faster than the LSTM's step-by-step loop, "
              "forward + backward.", "Transformers … train on all positions in parallel",
              source("loop", "04 · The ceiling", "Vaswani et al. 2017"),
              above(0, "mean over seeds of log10(LSTM time / attention time) > 0"), "faster",
              measurement(short, seeds, unit="log10 ratio"), arms=("timing",),
              note=ONE_THREAD + "; at short T the LSTM pays T small sequential steps"),
    ]
    series = {}
    for k in ("lstm", "attention", "feedforward"):
        rows = [r["fwd_bwd_s"][k] for r in ok.values()]
        if rows:
            series[k] = {"x": L, "runs": rows,
                         "y": [log_interval([r[i] for r in rows])[0] for i in range(len(L))]}
    figures = []
    if series:
        t0, t1 = series["lstm"]["y"][0], series["attention"]["y"][-1]
        fig = plots.plot_curves(
            series, title=f"Forward + backward time, one thread (B = {first.get('batch')}, "
                          f"width {first.get('width')})", xlabel="sequence length T",
            ylabel="seconds", logx=True, logy=True, xticks=L,
            overlays={"∝ T": (L, [t0 * T / L[0] for T in L]),
                      "∝ T²": (L, [t1 * (T / L[-1]) ** 2 for T in L])})
        figures.append(("time_vs_length", fig,
                        "Both axes are logarithmic, so a slope of 1 is linear and 2 quadratic "
                        "(the two dashed guides). The LSTM runs parallel to '∝ T' (one step "
                        "after another); attention bends up towards '∝ T²' at long T; the "
                        "feed-forward layer is cheapest throughout. One thread: these are "
                        "costs of work, not of parallelism."))
    rows = [[s, r["lstm_forward_s"], r["linear_forward_s"], sig(r["ratio"], 3),
             sig(r["lstm_gflops"], 3), sig(r["linear_gflops"], 3)] for s, r in ok.items()]
    tl = [[T, *[brief(measurement([r["fwd_bwd_s"][k][i] for r in ok.values()],
                                  list(ok), scale="log")) for k in ("lstm", "attention",
                                                                     "feedforward")]]
          for i, T in enumerate(L)]
    out = Summary(claims, figures, [
        table(f"The notes' configuration, forward only (B = {n.get('B')}, T = {n.get('T')}, "
              f"width {n.get('d')}), per seed", ["seed", "LSTM s", "Linear s", "ratio",
                                                 "LSTM GFLOP/s", "Linear GFLOP/s"], rows),
        table("Forward + backward seconds (geometric mean [95 % interval] over seeds)",
              ["T", "lstm", "attention", "feedforward"], tl)],
        ["Each run: one torch thread; a time is the CPU time of the fastest of ≥ 3 calls after a "
         "warm-up (with one thread, the call's own cost: other processes on the machine do not "
         "inflate it as they inflate wall time). Seeds repeat the whole measurement on fresh "
         "inputs and weights.",
         "FLOPs: LSTM 2·8·d² per position (four gates, input and recurrent products), Linear "
         "2·d² per position; elementwise work is left out.",
         "What one thread cannot show: on a GPU or with many threads the Linear's "
         "positions run at once while the LSTM's steps cannot; that is the parallelism of the "
         "notes, and it is absent from every number here."],
        {"notes_configuration": n, "lengths": L, "width": first.get("width"),
         "batch": first.get("batch"), "threads": 1, "lstm_backend": first.get("lstm_backend")},
        {"flop_ratio": flop_ratio})
    out.claims += s_claims
    out.figures += s_figures
    out.tables += s_tables
    out.notes += s_notes
    return out


# -- the scan arm (parallelism_scan.py) ---------------------------------------------------------
FLAT = 1.5  # "time per token does not grow with T": per-token time at the largest T / smallest
SCAN_SRC = source("loop", "05 · Standing — What survives", "Feng et al. 2024; Orvieto et al. "
                  "2023; Heinsen 2023 (the log-space scan); Blelloch 1990 (scans)")
SCAN_QUOTE = ("The recurrent form never died: O(1) memory per step and O(T) total compute is "
              "exactly what streaming and edge inference want, which is why Mamba-style "
              "selective SSMs and hybrid models … are recurrences with better-behaved dynamics.")
TWO_CORES = ("one torch thread per run: the scan's O(log T) dependent rounds run their "
             "elementwise work one element after another, so its depth cannot show; it wins here, "
             "where it does, by doing the T steps as a few whole-sequence operations instead of T "
             "small ones (vectorising over T)")


def scan_part(runs: Runs, seeds: list[int]):
    """(claims, figures, tables, notes) of the scan arm; empty when it did not run."""
    ok = runs.ok("scan")
    if not ok:
        return [], [], [], []
    first = next(iter(ok.values()))
    L, d, B = first["scan_lengths"], first["scan_width"], first["scan_batch"]
    v = lambda key: runs.values("scan", key, seeds)
    growth = [r["per_token_us"]["scan"][-1] / r["per_token_us"]["scan"][0] if r else None
              for r in v(lambda r: r)]
    gain = [math.log10(r["scan_s"]["loop"][-1] / r["scan_s"]["scan"][-1]) if r else None
            for r in v(lambda r: r)]
    loop_growth = [r["per_token_us"]["loop"][-1] / r["per_token_us"]["loop"][0] if r else None
                   for r in v(lambda r: r)]
    claims = [
        claim("scan_per_token_flat", f"minGRU's parallel scan: forward + backward time per token "
              f"does not grow with T (T = {L[0]} → {L[-1]}).", SCAN_QUOTE, SCAN_SRC,
              below(FLAT, f"per-token time at T = {L[-1]} / at T = {L[0]} (geometric mean) "
                          f"< {FLAT:g}"), "≈ 1 (O(T) work, O(log T) depth)",
              measurement(growth, seeds, scale="log", unit="ratio"), arms=("scan",),
              note=TWO_CORES + ". The loop's ratio: " + brief(measurement(
                  loop_growth, seeds, scale="log"))),
        claim("scan_beats_loop", f"At T = {L[-1]} the scan trains faster than the same layer's "
              "step-by-step loop (forward + backward, one thread).", SCAN_QUOTE, SCAN_SRC,
              above(0, f"mean over seeds of log10(loop time / scan time) at T = {L[-1]} > 0"),
              "faster", measurement(gain, seeds, unit="log10 ratio"), arms=("scan",),
              kind="finding", note=TWO_CORES),
    ]
    series = {}
    for k, label in (("scan", "minGRU, parallel scan"), ("loop", "minGRU, sequential loop"),
                     ("attention", "attention (1 layer)")):
        rows = [r["per_token_us"][k] for r in ok.values()]
        series[label] = {"x": L, "runs": rows, "style": "--" if k == "loop" else "-",
                         "y": [log_interval([r[i] for r in rows])[0] for i in range(len(L))]}
    fig = plots.plot_curves(series, title=f"Forward + backward time per token (B = {B}, "
                                          f"width {d}, one thread)", xlabel="sequence length T",
                            ylabel="µs per token", logx=True, logy=True, xticks=L)
    figures = [("scan_time_per_token", fig,
                "A flat line is a cost per token that does not depend on T; the claims above "
                "give the measured ratios. The loop pays a per-step overhead on every token; "
                "attention's work per token grows with T (each query reads T keys). One thread: "
                "any advantage of the scan is vectorisation over T, not its O(log T) depth, which "
                "only parallel hardware would show.")]
    fl = first["flops_per_token"]
    rows = []
    for i, T in enumerate(L):
        row = [T]
        for k in ("scan", "loop", "attention"):
            t = measurement([r["scan_s"][k][i] for r in ok.values()], list(ok), scale="log")
            pt = t["mean"] / (B * T)
            row += [sig(1e3 * t["mean"], 3), sig(1e6 * pt, 3), sig(fl[k][i] / pt / 1e9, 3)]
        rows.append(row)
    cols = ["T"] + [f"{k} {u}" for k in ("scan", "loop", "attention")
                    for u in ("ms", "µs/token", "GFLOP/s")]
    tables = [table(f"minGRU scan vs loop vs attention, forward + backward (B = {B}, width {d}; "
                    "geometric mean over seeds)", cols, rows,
                    "FLOPs per token (forward + backward): scan " + ", ".join(
                        f"{x:.3g}" for x in fl["scan"]) + "; loop " + ", ".join(
                        f"{x:.3g}" for x in fl["loop"]) + "; attention " + ", ".join(
                        f"{x:.3g}" for x in fl["attention"]) + f" at T = {L}.")]
    notes = ["Scan arm: minGRU (log-space scan, rnnlab.scan) and the same weights run step by "
             "step (scan='sequential'), one causal single-head attention layer; the fastest of "
             "≥ 3 forward + backward calls after a warm-up, CPU time, one thread. FLOPs: "
             "products 3 × 2·(2d)·d per token, the recurrence 2d per step for the loop and "
             "(6 + ⌈log₂ 16⌉)·d for the log-space scan (chunks of 16 steps, elementwise "
             "operations counted 1 each), twice (forward and the reverse-scan backward); "
             "attention 3 × (8d² + 4Td). What two cores cannot show: " + TWO_CORES
             + "; a GPU runs each round's elementwise work at once."]
    return claims, figures, tables, notes
