"""regimes: σ_max(W_hh) below, at and above 1 — vanishing, "stable", exploding — and clipping.

The notes (rnn-lstm-essentials.txt §2): ‖∂h_T/∂h_t‖ ≤ σ_max(W_hh)^(T−t) for a tanh RNN; below 1
the gradient vanishes, at 1 it is "maintained (ideal but fragile)", above 1 it explodes and
training diverges; gradient clipping fixes exploding gradients, but there is no simple fix for
vanishing ones.

Measured here, on the adding problem (rnnlab.data, T steps, inputs (value, marker)), with a tanh
RNN whose W_hh = r·Q (Q orthogonal, so σ_max = spectral radius = r) for r in {0.8, 1.0, 1.2, 1.5}:
1. ‖∂L/∂h_t‖ against the distance T−t (L = MSE of a linear readout of h_T), step by step with
   retain_grad (float64), batch-averaged; the bound σ_max^(T−t) checked per example.
2. The same curve "as applied" after clip_grad_norm_(max_norm=1): clipping multiplies every
   gradient by one factor min(1, 1/‖g‖), so it can shrink an exploding gradient but cannot raise
   a vanishing one.
3. Plain SGD on the task from that init, without clipping and with clip 1: loss curves.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from .. import RNN, plots
from ..data import build_task
from ..equations import unroll
from ..telemetry import saturated
from .common import Claim, StudyOutput, pick, progress, save_figure, sig, table, write_results

NAME = "regimes"
H = 32
RADII = (0.8, 1.0, 1.2, 1.5)


def _model(r: float, seed: int, dtype=torch.float32):
    torch.manual_seed(seed)
    rnn = RNN(2, H, batch_first=True, recurrent_init="orthogonal", spectral_radius=r, dtype=dtype)
    head = nn.Linear(H, 1).to(dtype)
    return rnn, head


def grad_vs_distance(r: float, task, B: int, seed: int) -> dict:
    """‖∂L/∂h_t‖ (batch mean) vs distance, the per-example bound check, and clipping's effect."""
    rnn, head = _model(r, seed, torch.float64)
    batch = task.batch("train", B, torch.Generator().manual_seed(seed))
    x, y = batch.x.double(), batch.y.double()
    (rec,) = unroll(rnn, x, retain_grad=True).steps
    loss = ((head(rec.h[-1]).squeeze(-1) - y) ** 2).mean()  # L = mean (ŷ − y)²
    params = list(rnn.parameters()) + list(head.parameters())
    loss.backward()  # (unroll uses the very same Parameters, so their .grad is the true gradient)
    gh = torch.stack([h.grad.norm(dim=-1) for h in rec.h], 1)  # (B, T) ‖∂L/∂h_t‖
    T = gh.shape[1]
    dist = torch.arange(T - 1, -1, -1, dtype=torch.float64)  # T − t
    rel = gh / gh[:, -1:]  # per example ‖∂L/∂h_t‖ / ‖∂L/∂h_T‖
    sigma = torch.linalg.matrix_norm(rnn.weight_hh_l0.detach(), ord=2).item()
    bound_ratio = (rel / sigma ** dist)[:, :-1].max().item()  # t < T; ≤ 1 if the bound holds
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in params)).item()  # ‖∂L/∂θ‖
    coef = min(1.0, 1.0 / (total + 1e-6))  # clip_grad_norm_(max_norm=1) scale factor
    mean = gh.mean(0)
    return {"r": r, "sigma_max": sigma, "distance": dist.tolist()[::-1],
            "grad_h": mean.flip(0).tolist(),  # index d: distance d from the loss
            "grad_h_clipped": (mean * coef).flip(0).tolist(),
            "ratio_first_last": (mean[0] / mean[-1]).item(),
            "ratio_first_last_clipped": ((mean[0] * coef) / (mean[-1] * coef)).item(),
            "param_grad_norm": total, "clip_coef": coef, "bound_max_ratio": bound_ratio,
            "saturated_fraction": saturated("h", torch.stack(rec.h)).double().mean().item()}


def train_sgd(r: float, task, clip: float | None, steps: int, lr: float, B: int,
              seed: int) -> dict:
    """Plain SGD from the r-init; returns losses and gradient norms per step."""
    rnn, head = _model(r, seed)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    losses, norms, diverged_at = [], [], None
    for step in range(steps):
        batch = task.batch("train", B, g)
        out, _ = rnn(batch.x)
        loss = ((head(out[:, -1]).squeeze(-1) - batch.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf"))
        losses.append(loss.item())
        norms.append(norm.item())
        if not math.isfinite(loss.item()) or loss.item() > 1e3:
            diverged_at = step
            break  # NaN/inf from here on: nothing more to see
        opt.step()
    tail = losses[-10:]
    return {"clip": clip, "losses": losses, "grad_norms": norms, "diverged_at": diverged_at,
            "first_loss": losses[0],
            "final_loss": (sum(tail) / len(tail)) if diverged_at is None else None}


def run(profile: str = "default", seed: int = 0, out: Path | str = Path(".")) -> dict:
    started = time.perf_counter()
    out = Path(out)
    T = pick(profile, quick=50, default=50, full=100)
    B = pick(profile, quick=32, default=64, full=256)
    steps = pick(profile, quick=60, default=100, full=500)
    lr = 0.1
    task = build_task("adding", length=T)

    curves = {}
    training = {}
    for r in progress("regimes", RADII):
        curves[str(r)] = grad_vs_distance(r, task, B, seed)
        training[str(r)] = {"no_clip": train_sgd(r, task, None, steps, lr, 32, seed),
                            "clip_1": train_sgd(r, task, 1.0, steps, lr, 32, seed)}

    results = {"radii": list(RADII), "T": T, "curves": curves, "training": training,
               "baseline_mse": task.baseline}
    claims = make_claims(results)
    figures = [save_figure(plot_distance(results), out, "grad_vs_distance"),
               save_figure(plot_training(results), out, "sgd_with_without_clipping")]
    config = {"task": task.config() | {"name": "adding"}, "hidden_size": H, "radii": list(RADII),
              "W_hh": "r·orthogonal (σ_max = r)", "batch_for_gradients": B, "sgd_lr": lr,
              "sgd_batch": 32, "sgd_steps": steps, "clip": 1.0, "seed": seed}
    notes = [f"tanh RNN, hidden {H}, W_hh = r·Q (Q orthogonal), torch default W_ih and biases; "
             f"L = MSE of a linear readout of h_T on the adding problem, T = {T}.",
             "‖∂L/∂h_t‖ is the total gradient reaching h_t (retain_grad on a step-by-step "
             "unrolling with the layer's own weights, float64), averaged over the batch.",
             f"Training: plain SGD, lr {lr}, batch 32, {steps} steps, the same init and batches "
             "with and without clip_grad_norm_(max_norm=1); a run 'diverges' when its loss is "
             "non-finite or above 1e3."]
    tables = [table(
        f"Three regimes (T = {T}): gradient over distance, and {steps} SGD steps",
        ["σ_max", "‖∂L/∂h_1‖/‖∂L/∂h_T‖", "after clipping", "clip factor", "no clip: diverged at",
         "clip 1: first loss", "clip 1: final loss"],
        [[curves[str(r)]["sigma_max"], curves[str(r)]["ratio_first_last"],
          curves[str(r)]["ratio_first_last_clipped"], curves[str(r)]["clip_coef"],
          training[str(r)]["no_clip"]["diverged_at"], training[str(r)]["clip_1"]["first_loss"],
          training[str(r)]["clip_1"]["final_loss"]] for r in RADII])]
    return write_results(out, StudyOutput(NAME, profile, seed, config, results, claims, figures,
                                          notes, tables), started)


def make_claims(res: dict) -> list[Claim]:
    c, tr, T = res["curves"], res["training"], res["T"]
    claims = []
    worst = max(c[str(r)]["bound_max_ratio"] for r in RADII)
    claims.append(Claim(
        "sigma_bound", "‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ ≤ σ_max(W_hh)^(T−t) for a tanh RNN (every example, "
        "every t, every r).", "max over examples, t, r of ratio / σ_max^(T−t) ≤ 1",
        sig(worst, 4), worst <= 1 + 1e-9))
    v = c["0.8"]["ratio_first_last"]
    claims.append(Claim(
        "vanishing_below_1", f"σ_max = 0.8 < 1: the gradient vanishes over distance (T={T}).",
        f"‖∂L/∂h_1‖/‖∂L/∂h_T‖ < 1e-3 (bound 0.8^{T - 1} = {sig(0.8 ** (T - 1), 3)})", sig(v, 3),
        v < 1e-3))
    s = c["1.0"]["ratio_first_last"]
    claims.append(Claim(
        "stable_at_1", f"σ_max = 1: the gradient is 'maintained' over distance (T={T}).",
        "‖∂L/∂h_1‖/‖∂L/∂h_T‖ between 0.1 and 10", sig(s, 3), 0.1 <= s <= 10,
        "the bound is 1, but every step also multiplies by tanh'(z) ≤ 1: 'ideal but fragile'"))
    for r in (1.2, 1.5):
        e = c[str(r)]["ratio_first_last"]
        claims.append(Claim(
            f"exploding_at_{r}", f"σ_max = {r} > 1: the gradient grows with distance (T={T}), "
            "at initialisation.", "‖∂L/∂h_1‖/‖∂L/∂h_T‖ > 1", sig(e, 3), e > 1,
            f"saturated units (|h| > 0.95): {sig(c[str(r)]['saturated_fraction'], 2)}; "
            "saturation makes tanh' small and can cancel σ_max > 1"))
    for r in (1.2, 1.5):
        nc, cl = tr[str(r)]["no_clip"], tr[str(r)]["clip_1"]
        tamed = (nc["diverged_at"] is not None and cl["diverged_at"] is None
                 and cl["final_loss"] is not None and cl["final_loss"] < cl["first_loss"])
        claims.append(Claim(
            f"clipping_tames_{r}", f"σ_max = {r}: SGD diverges without clipping and trains with "
            "clip_grad_norm_(1).", "no clip: diverges; clip 1: finite, final loss < first loss",
            {"no_clip_diverged_at_step": nc["diverged_at"],
             "no_clip_final_loss": sig(nc["final_loss"], 3),
             "clip_first_loss": sig(cl["first_loss"], 3),
             "clip_final_loss": sig(cl["final_loss"], 3),
             "clip_diverged_at_step": cl["diverged_at"]}, tamed))
    v0, v1 = c["0.8"]["ratio_first_last"], c["0.8"]["ratio_first_last_clipped"]
    g0, g1 = c["0.8"]["grad_h"][-1], c["0.8"]["grad_h_clipped"][-1]
    claims.append(Claim(
        "clipping_cannot_fix_vanishing", "Clipping cannot raise a vanishing gradient "
        "(σ_max = 0.8): the gradient at the first step is not larger after clipping and its "
        "ratio to the last step is unchanged.", "clipped ‖∂L/∂h_1‖ ≤ unclipped; ratio unchanged",
        {"grad_h1": sig(g0, 3), "grad_h1_clipped": sig(g1, 3), "ratio": sig(v0, 3),
         "ratio_clipped": sig(v1, 3)},
        g1 <= g0 * (1 + 1e-12) and abs(v1 - v0) <= 1e-9 * max(v0, 1e-300)))
    return claims


def plot_distance(res: dict):
    panels = []
    for key, title in (("grad_h", "no clipping"), ("grad_h_clipped", "after clip_grad_norm_(1)")):
        series, overlays = {}, {}
        for r in RADII:
            c = res["curves"][str(r)]
            series[f"σ_max = {r}"] = (c["distance"], c[key])
        panels.append({"title": title, "series": series, "overlays": overlays,
                       "xlabel": "distance T − t", "ylabel": "‖∂L/∂h_t‖", "logy": True})
    c08 = res["curves"]["0.8"]
    panels[0]["overlays"]["0.8^(T−t)·‖∂L/∂h_T‖"] = (
        c08["distance"], [c08["grad_h"][0] * 0.8 ** d for d in c08["distance"]])
    return plots.plot_panels(panels, title=f"Gradient vs distance, tanh RNN (T = {res['T']})")


def plot_training(res: dict):
    panels = []
    for r in RADII:
        tr = res["training"][str(r)]
        panels.append({
            "title": f"σ_max = {r}",
            "series": {"no clipping": (list(range(len(tr["no_clip"]["losses"]))),
                                       tr["no_clip"]["losses"]),
                       "clip 1": (list(range(len(tr["clip_1"]["losses"]))),
                                  tr["clip_1"]["losses"])},
            "hline": {"baseline 0.167": res["baseline_mse"]},
            "xlabel": "SGD step", "ylabel": "training MSE", "logy": True})
    return plots.plot_panels(panels, title="Plain SGD on the adding problem, with and without "
                             "clipping")
