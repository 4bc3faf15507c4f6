"""parallelism: the sequential loop vs layers that see every position at once, timed.

The notes (Section 3.1 §7): an RNN needs O(T) sequential steps; "the feedforward layer is over
14 times faster" than an LSTM (forward, batch 32, T = 512, width 256), "and this gap widens
dramatically on GPUs"; attention is parallel over positions too, but costs O(T²) (Lesson 04,
"what attention does not give you for free").

What one CPU thread can and cannot show. Each run here has one torch thread (so that runs do not
disturb each other): nothing executes in parallel, so a time ratio measures *work* and how
efficiently each layer does it, never parallelism. An LSTM layer does 8 d×d matrix products per
position (4 gates × (W_ih x_t + W_hh h_{t−1})) to the Linear's one, so part of any ratio is
simply 8× the arithmetic; the rest is the cost of doing it as T small products one after another
instead of one large one. Measured per seed (a seed is one repetition on fresh inputs):

1. the notes' configuration, forward only: rnnlab.LSTM(256, 256) (torch's fused kernel) vs
   nn.Linear(256, 256) on (32, 512, 256); time, FLOPs and time per FLOP;
2. forward + backward of one LSTM layer, one causal single-head self-attention layer and one
   feed-forward layer (Linear + tanh), width 64, batch 8, for growing T: log-log slopes (1:
   linear, 2: quadratic). Every time is the CPU time of the fastest of several repeats after a
   warm-up (one thread: the call's own cost, whatever else the machine runs);
3. the ``scan`` arm (``parallelism_scan.py``): minGRU's parallel scan against the same layer's
   step loop and one attention layer, forward + backward at T = 128, 1024, 4096, per token, with
   FLOPs counted; on one thread the scan's O(log T) depth cannot show, only its vectorisation.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .. import LSTM
from ..attention import MultiHeadSelfAttention
from ..seeding import fingerprint, seed_everything
from .common import Outputs, pick, sig, specs
from .parallelism_claims import summarise as summarise  # the claims, tables and figures
from .parallelism_scan import time_scan

NAME = "parallelism"
SEEDS = {"quick": 2, "default": 3, "full": 5}
INTRO = {
    "title": "Sequential loop vs parallel layers",
    "question": "Is a feed-forward layer over 14 times faster than an LSTM on the notes' "
                "configuration — and how much of that is parallelism, which one CPU thread "
                "cannot show, and how much is arithmetic?",
    "quote": "For a sequence of length n, an RNN requires O(n) sequential operations, while a "
             "fully parallelizable architecture requires only O(1). … The feedforward layer is "
             "over 14 times faster, and this gap widens dramatically on GPUs and with longer "
             "sequences.",
    "source": {"lesson": "Section 3.1, “RNNs, vanishing gradients and seq2seq” "
                         "(rnns-vanishing-gradients-seq2seq)",
               "section": "§7 Sequential Computation: The Parallelism Problem (Code Fragment "
                          "3.1.4)", "cites": "Vaswani et al. 2017"},
    "method": "Time the notes' LSTM and Linear (forward, one thread) and count their FLOPs; "
              "then forward + backward of an LSTM, attention and a feed-forward layer against "
              "T. One thread per run: ratios measure work, not parallelism.",
}


class _Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn = MultiHeadSelfAttention(d, 1)

    def forward(self, x):
        return self.attn(x, causal=True)[0]


class _FeedForward(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.lin(x))  # every position at once


def fastest(fn, repeats: int, budget_s: float = 0.3) -> float:
    """The fastest of ≥ ``repeats`` timed calls after one warm-up (more, up to 30, while their
    total stays under ``budget_s``), each timed by the CPU clock of this process: with one
    torch thread that is the call's own cost, which other processes sharing the core cannot
    inflate (a wall clock on a busy machine counts their turns too)."""
    fn()
    runs = []
    for _ in range(30):
        t0 = time.process_time()
        fn()
        runs.append(time.process_time() - t0)
        if len(runs) >= repeats and sum(runs) > budget_s:
            break
    return min(runs)


def fwd_bwd(module: nn.Module, x: torch.Tensor):
    def once():
        module.zero_grad(set_to_none=True)
        module(x.detach().requires_grad_(True)).sum().backward()
    return once


def plan(profile: str, seeds: list[int]):
    cfg = {"notes": pick(profile, quick={"B": 4, "T": 128, "d": 64},
                         default={"B": 32, "T": 512, "d": 256}),
           "lengths": pick(profile, quick=[16, 64, 256], default=[16, 32, 64, 128, 256, 512,
                                                                  1024],
                           full=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096]),
           "d": pick(profile, quick=32, default=64), "B": pick(profile, quick=4, default=8),
           "repeats": pick(profile, quick=2, default=3, full=5)}
    scan = {"scan_lengths": pick(profile, quick=[32, 128, 512], default=[128, 1024, 4096]),
            "scan_d": pick(profile, quick=32, default=64), "scan_B": 4,
            "budget_s": pick(profile, quick=0.02, default=0.3),  # repeat while under it
            "repeats": cfg["repeats"]}
    return specs(NAME, profile, seeds, {"timing": cfg, "scan": scan},
                 {"timing": pick(profile, quick=0.8, default=12, full=45),  # CPU s per run
                  "scan": pick(profile, quick=0.8, default=10, full=12)})


def run_one(spec) -> dict:
    if spec.arm == "scan":
        return time_scan(spec, fastest, fwd_bwd, _Attention)
    s = spec.settings
    seed_everything(spec.seed)
    g = torch.Generator().manual_seed(spec.seed)
    n = s["notes"]
    lstm, lin = LSTM(n["d"], n["d"], batch_first=True), nn.Linear(n["d"], n["d"])
    fp = fingerprint(nn.ModuleList([lstm, lin]))
    x = torch.randn(n["B"], n["T"], n["d"], generator=g)
    t_lstm = fastest(lambda: lstm(x), s["repeats"])
    t_lin = fastest(lambda: lin(x), s["repeats"])
    positions = n["B"] * n["T"]
    flops = {"lstm": 2 * 8 * n["d"] ** 2 * positions, "linear": 2 * n["d"] ** 2 * positions}
    d, B = s["d"], s["B"]
    layers = {"lstm": Outputs(LSTM(d, d, batch_first=True)), "attention": _Attention(d),
              "feedforward": _FeedForward(d)}
    times = {k: [] for k in layers}
    for T in s["lengths"]:
        xx = torch.randn(B, T, d, generator=g)
        for k, m in layers.items():
            times[k].append(sig(fastest(fwd_bwd(m, xx), s["repeats"]), 4))
    return {"init_fingerprint": fp, "notes_config": n, "lstm_forward_s": sig(t_lstm, 4),
            "linear_forward_s": sig(t_lin, 4), "flops": flops, "lengths": s["lengths"],
            "width": d, "batch": B, "fwd_bwd_s": times,
            "lstm_backend": layers["lstm"].core.backend}  # every time in a field ending in _s
