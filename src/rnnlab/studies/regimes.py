"""regimes: σ_max(W_hh) below, at and above 1 — vanishing, "stable", exploding — and clipping.

The notes (Day 3 §2): ‖∂h_T/∂h_t‖ ≤ σ_max(W_hh)^(T−t) for a tanh RNN; below 1 the gradient
vanishes, at 1 it is "maintained (ideal but fragile)", above 1 it explodes and training diverges;
gradient clipping fixes exploding gradients, but there is no simple fix for vanishing ones.

A tanh RNN (hidden 32) on the adding problem, W_hh = r·Q (Q orthogonal: σ_max = spectral radius
= r), r ∈ {0.8, 1.0, 1.2, 1.5}, L = MSE of a linear readout of h_T; per seed, per r:

1. the gradient over distance, ‖∂L/∂h_1‖/‖∂L/∂h_T‖ at T = 25, 50, 100 (step-by-step unrolling,
   retain_grad, float64), its decay per step (least-squares slope of the log against T − 1),
   the bound checked per example, and the mean tanh′ along the path — in two regimes:
   *linear* (input weights × 1e-24, zero biases: the state stays ≈ 0 and tanh′ ≈ 1, where the
   σ_max law is a law) and *saturating* (torch's default input weights and biases: tanh′ < 1,
   so a step multiplies by about r·RMS(tanh′), not r);
2. plain SGD (lr 0.1) on adding at T = 20 from that init, with and without clip_grad_norm_(1),
   the same init and batches: does it diverge, and does the clipped run learn (beat 0.167)?
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import RNN
from ..data import build_task
from ..equations import unroll
from ..seeding import fingerprint, seed_everything
from ..telemetry import saturated
from .common import pick, sig, specs
from .regimes_claims import BASELINE, EPS, RADII
from .regimes_claims import summarise as summarise  # the claims, tables and figures
from .stats import decay_factor

NAME = "regimes"
SEEDS = {"quick": 2, "default": 3, "full": 8}
H = 32
INTRO = {
    "title": "Three regimes of σ_max, and clipping",
    "question": "Does the gradient through a tanh RNN vanish, hold or explode as σ_max(W_hh) is "
                "below, at or above 1 — and does clipping fix the explosion but not the "
                "vanishing?",
    "quote": "‖∂h_T/∂h_t‖ ≤ σ_max(W_hh)^(T−t). … < 1: Vanishing, → 0 exponentially; = 1: "
             "Stable, maintained, ideal but fragile; > 1: Exploding, → ∞ exponentially, training "
             "diverges. … Gradient clipping fixes exploding gradients. … But there is no simple "
             "fix for vanishing gradients.",
    "source": {"lesson": "Day 3, “RNN/LSTM Essentials” (rnn-lstm-essentials)",
               "section": "§2.1 The Mathematical Argument; §2.2",
               "cites": "Pascanu, Mikolov & Bengio 2013"},
    "method": "W_hh = r·Q with Q orthogonal (σ_max = r exactly); the gradient over distance in "
              "the linear regime, where the law applies, and at torch's default input weights "
              "(the saturating regime) beside it; then plain SGD with and without clipping.",
}


def plan(profile: str, seeds: list[int]):
    Ts = pick(profile, quick=[25, 50], default=[25, 50, 100], full=[25, 50, 100, 200])
    B = pick(profile, quick=16, default=64, full=128)
    steps = pick(profile, quick=100, default=1500, full=3000)
    arms = {}
    for r in RADII:
        for regime in ("linear", "saturating"):
            arms[f"grad-{regime}-r{r:g}"] = {"kind": "grad", "r": r, "regime": regime,
                                            "lengths": Ts, "B": B}
        for clip in (None, 1.0):
            arms[f"sgd-r{r:g}-{'clip' if clip else 'noclip'}"] = {
                "kind": "sgd", "r": r, "clip": clip, "T": 20, "steps": steps, "lr": 0.1,
                "batch": 32}
    grad = pick(profile, quick=0.3, default=0.8, full=3.0)  # CPU s per run
    cost = {a: grad if s["kind"] == "grad" else 0.3 if s["r"] > 1 and not s["clip"]
            else 0.4 if profile == "quick" else s["steps"] * 0.0017 for a, s in arms.items()}
    return specs(NAME, profile, seeds, arms, cost)


def _model(r: float, seed: int, dtype=torch.float32) -> tuple[nn.Module, nn.Module, str]:
    """The RNN and its readout, built from the seed with σ_max = 1 (fingerprinted), then
    W_hh ← r·W_hh: every r of one seed shares Q, W_ih and the biases."""
    seed_everything(seed)
    rnn = RNN(2, H, batch_first=True, recurrent_init="orthogonal", spectral_radius=1.0,
              dtype=dtype)
    head = nn.Linear(H, 1).to(dtype)
    fp = fingerprint(nn.ModuleList([rnn, head]))
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(r)
    return rnn, head, fp


def grad_run(s: dict, seed: int) -> dict:
    r, regime = s["r"], s["regime"]
    rnn, head, fp = _model(r, seed, torch.float64)
    if regime == "linear":
        with torch.no_grad():
            rnn.weight_ih_l0.mul_(EPS)
            rnn.bias_ih_l0.zero_()
            rnn.bias_hh_l0.zero_()
    sigma = torch.linalg.matrix_norm(rnn.weight_hh_l0.detach(), ord=2).item()
    out = {"init_fingerprint": fp, "sigma_max": sig(sigma, 6), "lengths": s["lengths"],
           "ratio": [], "bound_max": [], "tanh_mean": [], "tanh_rms": [], "saturated": []}
    for T in s["lengths"]:
        task = build_task("adding", length=T)
        batch = task.batch("train", s["B"], torch.Generator().manual_seed(seed * 7919 + T))
        x, y = batch.x.double(), batch.y.double()
        (rec,) = unroll(rnn, x, retain_grad=True).steps
        rnn.zero_grad()
        ((head(rec.h[-1]).squeeze(-1) - y) ** 2).mean().backward()
        gh = torch.stack([h.grad.norm(dim=-1) for h in rec.h], 1)  # (B, T) ‖∂L/∂h_t‖
        rel = gh / gh[:, -1:]
        dist = torch.arange(T - 1, -1, -1, dtype=torch.float64)  # T − t
        d = 1 - torch.stack(rec.h).detach() ** 2  # tanh′(z_t) = 1 − h_t², (T, B, H)
        rms = d.pow(2).mean(dim=(1, 2)).sqrt()  # per step, over batch and units
        out["ratio"].append(sig((gh[:, 0] / gh[:, -1]).log().mean().exp().item(), 5))
        out["bound_max"].append(sig((rel / sigma ** dist)[:, :-1].max().item(), 6))
        out["tanh_mean"].append(sig(d.mean().item(), 4))
        out["tanh_rms"].append(sig(rms[1:].log().mean().exp().item(), 5))  # geometric over t
        out["saturated"].append(sig(saturated("h", torch.stack(rec.h)).double().mean().item(),
                                    3))
    out["factor"] = sig(decay_factor(s["lengths"], out["ratio"]), 5)
    out["predicted_factor"] = sig(r * math.exp(sum(math.log(v) for v in out["tanh_rms"])
                                               / len(out["tanh_rms"])), 5)
    return out


def sgd_run(s: dict, seed: int) -> dict:
    """Plain SGD from the r-init; losses per step, the step of divergence (loss non-finite or
    above 1e3), and the final loss (mean of the last 50 steps)."""
    rnn, head, fp = _model(s["r"], seed)
    task = build_task("adding", length=s["T"])
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=s["lr"])
    g = torch.Generator().manual_seed(seed + 1)
    losses, diverged = [], None
    for step in range(s["steps"]):
        batch = task.batch("train", s["batch"], g)
        out, _ = rnn(batch.x)
        loss = ((head(out[:, -1]).squeeze(-1) - batch.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, s["clip"] or float("inf"))
        losses.append(loss.item())
        if not math.isfinite(loss.item()) or loss.item() > 1e3:
            diverged = step
            break
        opt.step()
    tail = losses[-50:]
    every = max(1, len(losses) // 100)
    return {"init_fingerprint": fp, "diverged_at": diverged, "diverged": diverged is not None,
            "first_loss": sig(losses[0], 4),
            "final_loss": None if diverged is not None else sig(sum(tail) / len(tail), 4),
            "beats_baseline": diverged is None and sum(tail) / len(tail) < 0.9 * BASELINE,
            "curve": {"step": list(range(0, len(losses), every)),
                      "loss": [sig(v, 4) for v in losses[::every]]}}


def run_one(spec) -> dict:
    return (grad_run if spec.settings["kind"] == "grad" else sgd_run)(spec.settings, spec.seed)
