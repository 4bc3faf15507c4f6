"""Gate statistics along a trajectory: mean, fraction saturated and histogram per gate and step.

The saturation rule and the kinds of gates are the telemetry's (``rnnlab.telemetry``), so these
numbers agree with what ``rnnlab.trace`` records inside the engine.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..telemetry import gate_kind, saturated
from .trajectory import trajectory

HIST_BINS = 20  # fixed histogram bins: [0, 1] for σ gates, [−1, 1] for tanh activations


def _masked_mean(v: Tensor, w: Tensor | None, dims) -> Tensor:
    """Σ w·v / Σ w over ``dims``, w (broadcastable) the 0/1 weight of each value; None: all 1."""
    return v.mean(dims) if w is None else (v * w).sum(dims) / w.expand_as(v).sum(dims)


def gate_stats(module: nn.Module, x, *, hx=None, bins: int = HIST_BINS) -> dict:
    """Statistics of every gate of every layer and direction along the trajectory driven by x.

    Gates: LSTM i, f, g, o; GRU r, z, n; the RNN has none, so its activation h_t = φ(a_t) is
    reported as "h". Laid out like the engine's telemetry (``rnnlab.trace``), rows k = l·D + d,
    steps in input order t = 0..T−1, also for the reverse direction (as in the telemetry).
    With packed input, step t counts the sequences still active at t (as the telemetry does).

    Saturation, the telemetry's rule (``rnnlab.telemetry.saturated``): σ gates (i, f, o, r, z)
    below 0.05 or above 0.95; tanh activations (g, n, RNN h) where |v| > 0.95 (their derivative
    1 − v² < 0.1); a relu RNN's h where it is 0 (dead units).

    Inputs: module, x, hx
        * **module**: an rnnlab RNN / LSTM / GRU, or a model containing one (``rnnlab.probes``).
        * **x**: exactly what ``module`` takes. A layer: (T, B, I), or (B, T, I) with
          ``batch_first=True``, or one sequence (T, I), or a PackedSequence; a model: its own
          input (token ids, features).
        * **hx**: the layer's initial state as it takes it, h_0 (L·D, B, H) or (h_0, c_0);
          default: what the model passes it, zeros for a layer.
    Outputs: stats
        * **stats**: {gate: {"mean": (L·D, T) mean over batch and units at each step,
          "saturated": (L·D, T) fraction saturated at each step,
          "hist": (L·D, T, bins) fraction of values in each bin at each step,
          "run_mean": (L·D,), "run_saturated": (L·D,), "run_hist": (L·D, bins) the same over
          the whole run (all steps, batch and units),
          "edges": (bins + 1,) fixed bin edges: [0, 1] for σ gates, [−1, 1] for tanh
          (relu h: [0, max])}}
    """
    layer, recs, _ = trajectory(module, x, hx, torch.float64, "all")
    in_order = lambda r, v: v.flip(1) if r.direction == 1 else v  # processing -> input order
    act = recs[0].active  # (B, T) the same rows at each input step in every direction
    w = None if act is None else in_order(recs[0], act)[None, :, :, None].double()  # (1,B,T,1)
    out: dict[str, dict] = {}
    for name in recs[0].gates:
        vals = torch.stack([in_order(r, r.gates[name]) for r in recs])  # (L·D, B, T, H)
        kind = gate_kind(name, layer.nonlinearity)
        if kind == "sigmoid":
            lo, hi = 0.0, 1.0
        elif kind == "relu":
            top = vals if w is None else vals * w  # (relu h ≥ 0: padding counts as 0)
            lo, hi = 0.0, max(float(top.max()), 1e-12)
        else:
            lo, hi = -1.0, 1.0
        edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
        idx = ((vals - lo) / (hi - lo) * bins).floor().clamp(0, bins - 1).long()
        onehot = torch.nn.functional.one_hot(idx, bins).double()  # (L·D, B, T, H, bins)
        sat = saturated(name, vals, layer.nonlinearity).double()
        wh = None if w is None else w.unsqueeze(-1)  # (1, B, T, 1, 1) for the histogram
        out[name] = {
            "mean": _masked_mean(vals, w, (1, 3)).float(),
            "saturated": _masked_mean(sat, w, (1, 3)).float(),
            "hist": _masked_mean(onehot, wh, (1, 3)).float(),
            "run_mean": _masked_mean(vals, w, (1, 2, 3)).float(),
            "run_saturated": _masked_mean(sat, w, (1, 2, 3)).float(),
            "run_hist": _masked_mean(onehot, wh, (1, 2, 3)).float(),
            "edges": edges.float(),
        }
    return out
