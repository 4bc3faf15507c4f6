"""gradflow's rows for the parallel-scan recurrences: minGRU, minLSTM (Feng et al. 2024) and the
LRU (Orvieto et al. 2023), beside their closed forms.

Their recurrence is diagonal, h_t = a_t ⊙ h_{t−1} + b_t, so the adjoint of the state with the loss
at t = T only is δ_t = conj(a_{t+1}) ⊙ δ_{t+1}: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = ‖∏_{t=2}^T a_t ⊙ δ_T‖/‖δ_T‖.
With a constant a (every |λ_j| = r for the LRU, a constant keep gate 1 − z for minGRU, a constant
normalised forget gate f' for minLSTM) that is r^(T−1) exactly, whatever δ_T: the closed-form
setting ("theory"). Measured with ``rnnlab.trace`` (the total adjoint ‖δ_t‖, batch mean), float64.

Arms: ``*-theory`` the closed form (r = 0.9); ``mingru-default`` / ``minlstm-default`` the
layers' own init (gates from x_t: the product of input-dependent gates); ``lru-ring`` the paper's
ring init |λ| ∈ [0.9, 0.999] (Orvieto et al. 2023, §3.3), which the notes' T = 200 question asks
about. The input ratios (first/last, first/median of ‖∂L/∂x_t‖) are kept as for the other arms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import LRU, MinGRU, MinLSTM, trace
from ..seeding import fingerprint, seed_everything
from .common import Outputs

R = 0.9                       # the closed-form setting's |λ| = 1 − z = f' (as the RNN's r)
RING = (0.9, 0.999)           # the LRU paper's ring for long-range tasks
LOGIT_R = math.log(R / (1 - R))
ARMS = {"mingru-theory": ("mingru", "theory"), "minlstm-theory": ("minlstm", "theory"),
        "lru-theory": ("lru", "theory"), "mingru-default": ("mingru", "default"),
        "minlstm-default": ("minlstm", "default"), "lru-ring": ("lru", "ring")}


def closed_form(T: int, r: float = R) -> float:
    return r ** (T - 1)  # ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = r^(T−1) for a constant diagonal a, |a| = r


def build(name: str, setting: str, seed: int, H: int, dtype) -> tuple[nn.Module, str]:
    """(layer, fingerprint as built from the seed, before the setting's changes)."""
    seed_everything(seed)
    kw = {"batch_first": True, "dtype": dtype}
    if name == "lru":
        r_min, r_max = RING if setting == "ring" else (0.0, 1.0)
        layer = LRU(H, H, r_min=r_min, r_max=r_max, **kw)
    else:
        layer = {"mingru": MinGRU, "minlstm": MinLSTM}[name](H, H, **kw)
    fp = fingerprint(layer)
    if setting == "theory":
        with torch.no_grad():
            if name == "lru":  # |λ| = exp(−exp(ν^log)) = r; phases as drawn
                layer.nu_log_l0.fill_(math.log(-math.log(R)))
            elif name == "mingru":  # z = σ(b_z) = 1 − r, W_z = 0: keep gate 1 − z = r
                layer.weight_ih_l0[:H].zero_()
                layer.bias_ih_l0[:H].fill_(-LOGIT_R)
            else:  # i = 1 − r, f = r, W_i = W_f = 0: f' = f/(f + i) = r
                layer.weight_ih_l0[:2 * H].zero_()
                layer.bias_ih_l0[:H].fill_(-LOGIT_R)
                layer.bias_ih_l0[H:2 * H].fill_(LOGIT_R)
    return layer, fp


def state_ratio(layer: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """‖∂L/∂h_1‖/‖∂L/∂h_T‖ (batch means, rnnlab.trace), L = Σ_b CE at the last position."""
    with trace(layer) as tr:
        F.cross_entropy(head(layer(x)[0][:, -1]), y, reduction="sum").backward()
    g = tr.grad_h[0]
    return (g[0] / g[-1]).item()


def run_scan(spec, H: int, dtype, inputs, head_for, input_grads, ratios) -> dict:
    """One seed of a scan arm: per length the state ratio (and its closed form in the theory
    setting) and the input ratios as the other arms measure them."""
    s, seed = spec.settings, spec.seed
    name, setting = s["model"], s["setting"]
    layer, fp = build(name, setting, seed, H, dtype)
    head = head_for(seed)
    lengths = s["lengths"]
    seq = Outputs(layer)
    out = {"init_fingerprint": fp, "lengths": lengths, "state_first_last": [],
           "first_last": [], "first_median": []}
    for T in lengths:
        x, y = inputs(s["B"], T, seed)
        out["state_first_last"].append(state_ratio(layer, head, x, y))
        layer.zero_grad(set_to_none=True)
        r = ratios(input_grads(seq, head, T, s["B"], seed))
        out["first_last"].append(r["first_last"])
        out["first_median"].append(r.get("first_median"))
    if setting == "theory":
        cf = [closed_form(T) for T in lengths]
        out["closed_form"] = cf
        out["max_rel_err"] = max(abs(m / c - 1) for m, c in zip(out["state_first_last"], cf,
                                                                 strict=True))
    if name == "lru":
        mod = layer.eigenvalues().abs()
        out["lambda_abs"] = [mod.min().item(), mod.max().item()]
    return out

