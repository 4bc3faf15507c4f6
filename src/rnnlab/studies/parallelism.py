"""parallelism: wall time of forward + backward against T — the sequential loop vs attention.

The notes (rnns-vanishing-gradients-seq2seq.txt §7): an RNN needs O(T) sequential steps, a
feed-forward layer processes all positions at once ("over 14 times faster" than an LSTM at
T = 512, forward only, batch 32, width 256); attention is parallel over positions too, but its
cost is O(T²) (side-by-side-gradient-flow.txt, "what attention does not give you for free").

Measured here on this machine, on one CPU thread: forward + backward (sum of outputs)
of one rnnlab.LSTM layer, one causal single-head self-attention layer (rnnlab.attention, fused
scaled-dot-product kernel) and one feed-forward layer (Linear + tanh), width d, batch B, for
growing T; the median of several repeats after a warm-up. Slopes are d log time / d log T between
consecutive lengths (1: linear, 2: quadratic); the crossover is the first T at which attention
is slower than the LSTM (null if none within the lengths measured).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from .. import LSTM, plots
from ..attention import MultiHeadSelfAttention
from .common import Claim, StudyOutput, pick, progress, save_figure, sig, table, write_results

NAME = "parallelism"


class _Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn = MultiHeadSelfAttention(d, 1)

    def forward(self, x):
        return self.attn(x, causal=True)[0]


class _LSTM(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lstm = LSTM(d, d, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


class _FeedForward(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.lin(x))  # every position at once


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, repeats: int, budget_s: float = 0.2) -> float:
    """Fastest of ≥ `repeats` timed forward + backward passes of sum(module(x)) (more repeats,
    up to 50, while their total stays under `budget_s`): the minimum is the estimate least
    disturbed by other work on the machine."""
    def once():
        module.zero_grad(set_to_none=True)
        xx = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        module(xx).sum().backward()
        return time.perf_counter() - t0

    once()  # warm-up
    runs = [once() for _ in range(repeats)]
    while sum(runs) < budget_s and len(runs) < 50:
        runs.append(once())
    return min(runs)


def slopes(lengths, times):
    """d log t / d log T between consecutive lengths."""
    return [math.log(times[i + 1] / times[i]) / math.log(lengths[i + 1] / lengths[i])
            for i in range(len(lengths) - 1)]


def fit_slope(lengths, times) -> float:
    """Least-squares slope of log time against log T."""
    xs, ys = [math.log(T) for T in lengths], [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


def run(profile: str = "default", seed: int = 0, out: Path | str = Path(".")) -> dict:
    started = time.perf_counter()
    out = Path(out)
    lengths = pick(profile, quick=[16, 64, 256, 512], default=[16, 32, 64, 128, 256, 512, 1024],
                   full=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
    d = pick(profile, quick=32, default=64, full=256)
    B = pick(profile, quick=4, default=8, full=32)
    repeats = pick(profile, quick=2, default=3, full=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: stable timings, and the sequential/parallel contrast
    torch.manual_seed(seed)   # is then about work per step, not about spreading it over cores
    models = {"lstm": _LSTM(d), "attention": _Attention(d), "feedforward": _FeedForward(d)}
    times = {n: [] for n in models}
    g = torch.Generator().manual_seed(seed)
    for T in progress("parallelism", lengths):
        x = torch.randn(B, T, d, generator=g)
        for name, m in models.items():
            times[name].append(time_fwd_bwd(m, x, repeats))

    torch.set_num_threads(threads)
    sl = {n: slopes(lengths, t) for n, t in times.items()}
    crossover = next((T for T, a, l in zip(lengths, times["attention"], times["lstm"], strict=True)
                      if a > l), None)
    i512 = lengths.index(512) if 512 in lengths else len(lengths) - 1
    speedup = times["lstm"][i512] / times["feedforward"][i512]
    results = {"lengths": lengths,
               "times_s": {n: [sig(t, 4) for t in ts] for n, ts in times.items()},
               "slopes": {n: [sig(s, 3) for s in ss] for n, ss in sl.items()},
               "crossover_T": crossover,
               "sequential_steps": {"lstm": lengths, "attention": [1] * len(lengths),
                                    "feedforward": [1] * len(lengths)},
               "lstm_over_feedforward": [sig(a / b, 3) for a, b in
                                         zip(times["lstm"], times["feedforward"], strict=True)]}
    upper = len(lengths) // 2
    lstm_slope = fit_slope(lengths[upper:], times["lstm"][upper:])
    att_last = fit_slope(lengths[-3:], times["attention"][-3:])
    claims = [
        Claim("lstm_linear", "The LSTM's sequential loop costs O(T): time grows linearly with T "
              "(one step after another).",
              f"least-squares log-log slope over T ≥ {lengths[upper]} in [0.8, 1.2]",
              sig(lstm_slope, 4), 0.8 <= lstm_slope <= 1.2),
        Claim("feedforward_faster", f"A feed-forward layer, parallel over positions, is 'over 14 "
              f"times faster' than the LSTM at T={lengths[i512]} (notes: forward only, B=32, "
              "d=256).", "LSTM time / feed-forward time ≥ 14", sig(speedup, 3), speedup >= 14),
        Claim("attention_quadratic", "Attention's O(T²) term takes over at long T.",
              f"least-squares log-log slope over T = {lengths[-3:]} ≥ 1.5 (2 = quadratic)",
              sig(att_last, 4), att_last >= 1.5),
        Claim("attention_parallel_short", f"At short T attention (parallel over positions) is "
              f"faster than the LSTM's sequential loop (T={lengths[0]}).",
              "attention time < LSTM time",
              {"attention_s": sig(times["attention"][0], 3), "lstm_s": sig(times["lstm"][0], 3)},
              times["attention"][0] < times["lstm"][0]),
    ]
    fig = plots.plot_curves({n: (lengths, ts) for n, ts in times.items()},
                            title=f"Forward + backward wall time (B={B}, d={d})",
                            xlabel="sequence length T", ylabel="seconds", logx=True, logy=True,
                            overlays={"∝ T": (lengths, [times["lstm"][0] * T / lengths[0]
                                                        for T in lengths]),
                                      "∝ T²": (lengths, [times["attention"][-1] * (T / lengths[-1])
                                                         ** 2 for T in lengths])})
    figures = [save_figure(fig, out, "time_vs_length")]
    config = {"lengths": lengths, "width": d, "batch": B, "repeats": repeats,
              "threads": 1, "lstm_backend": models["lstm"].lstm.backend}
    notes = [f"Fastest of ≥ {repeats} timed forward+backward passes after one warm-up; times "
             "depend on this machine and its load (no other timing is asserted by tests).",
             "crossover_T: first T at which attention is slower than the LSTM "
             f"(measured: {crossover})."]
    tables = [table(f"Forward + backward, seconds (B={B}, d={d}, one thread)",
                    ["T", *models, "LSTM / feed-forward"],
                    [[T, *[times[n][i] for n in models], times["lstm"][i] / times["feedforward"][i]]
                     for i, T in enumerate(lengths)])]
    return write_results(out, StudyOutput(NAME, profile, seed, config, results, claims, figures,
                                          notes, tables), started)
