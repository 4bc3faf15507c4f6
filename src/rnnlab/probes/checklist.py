"""The course notes' RNN debugging checklist, automated: every probe on one input, ok / warn."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..layers import RNNBase
from ..telemetry import SATURATION, gate_kind, trace
from .gates import gate_stats
from .jacobians import jacobian_norms, lyapunov_spectrum, memory_length, memory_time_scale, spectral
from .trajectory import input_dims, layer_input


def checklist(model: nn.Module, x, *, threshold: float = 1e-3,
              saturation_warn: float = 0.5, lyapunov_k: int = 8, batch=None,
              task_kind: str | None = None) -> dict:
    """The course notes' RNN debugging checklist, automated, on input ``x``: exactly what
    ``model`` takes (token ids (B, T), features; for a bare layer its own layout, as the other
    probes). Every probe below runs on the recurrent layer's real input and initial state.

    Inputs: model, x
        * **model**: an rnnlab RNN / LSTM / GRU, or a model containing one (``rnnlab.probes``).
        * **x**: what ``model`` takes (a PackedSequence must hold equal-length sequences).
    Outputs: {"rows": [...], "probes": {...}}
      rows: dicts {"check", "value", "status" ("ok" | "warn"), "note"}, one per
      - shapes: model input -> recurrent-layer input (B, T, I) -> output (B, T, D·H);
      - finite parameters;
      - σ_max(W_hh) per layer and direction ("warn" above 1 for a vanilla RNN: may explode;
        gated cells: indicative only, never a warning);
      - gate saturation per gate over the run ("warn" above ``saturation_warn``);
      - gradient memory length: ``memory_length`` of the batch-mean ‖∂s_{T−1}/∂s_t‖₂
        ("warn": vanishing, it falls below ``threshold`` inside the window);
      - exploding: max_t ‖∂s_{T−1}/∂s_t‖₂ ("warn" above 1/threshold);
      - λ₁, the largest Lyapunov exponent ("warn" above 0: perturbations grow);
      - LSTM only: the cell-state highway ‖∏ f‖ across the whole window;
      - with ``batch`` (an rnnlab.data Batch whose x is ``x``) and ``task_kind``: the loss
        gradient through time ‖∂L/∂h_t‖ of the last layer, measured by the engine's telemetry
        (``rnnlab.trace``) during one backward pass of the task's loss ("warn" if it is
        non-finite or grows above 1/threshold × its value at the last step).
    probes: the raw results for plotting: "jacobian" (T,), "jacobian_batch" (B, T),
      "c_path" (T,) | None, "spectral", "lyapunov" (k,), "gates", "grad_h" (T,) | None.
    """
    layer, inp, hx = layer_input(model, x)
    B, T, I = input_dims(layer, inp)
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    rows = []

    def row(check, value, ok, note=""):
        rows.append({"check": check, "value": value, "status": "ok" if ok else "warn",
                     "note": note})

    shape = tuple(x.data.shape if isinstance(x, PackedSequence) else x.shape)
    row("shapes", f"x {shape} -> {layer.mode} input ({B}, {T}, {I}) -> "
        f"output ({B}, {T}, {D * H})", I == layer.input_size,
        f"{L} layer(s), {D} direction(s), hidden {H}")
    bad = sum(int((~torch.isfinite(p)).sum()) for p in model.parameters())
    row("finite parameters", f"{bad} non-finite", bad == 0,
        "" if bad == 0 else "NaN/Inf weights: lower the learning rate, clip gradients")

    spec = spectral(layer)
    for s in spec:
        if s["block"] != "W_hh":
            continue
        name = f"σ_max(W_hh) l{s['layer']}" + (" reverse" if s["direction"] else "")
        rho = s["spectral_radius"]
        extra = f"ρ = {rho:.3g}, " if rho is not None else ""
        if layer.mode == "RNN":
            ok = s["regime"] != "may explode"
            note = extra + {"vanishing": "‖∂h_T/∂h_t‖ ≤ σ_max^(T−t): vanishing guaranteed",
                            "critical": "norm-preserving bound (orthogonal)",
                            "may explode": "gradients may explode: clip them"}[s["regime"]]
        else:
            ok, note = True, extra + "gated cell: the gates shape the Jacobian (indicative only)"
        row(name, f"{s['sigma_max']:.4g}", ok, note)

    gates = gate_stats(layer, inp, hx=hx)
    for name, g in gates.items():
        frac = float(g["run_saturated"].mean())
        rule = {"sigmoid": f"σ < {SATURATION:g} or > {1 - SATURATION:g}", "relu": "h = 0 (dead)",
                "tanh": f"|v| > {1 - SATURATION:g}"}[gate_kind(name, layer.nonlinearity)]
        row(f"saturation {name}", f"{frac:.1%}", frac <= saturation_warn,
            f"mean {float(g['run_mean'].mean()):.3f}; saturated: {rule}")

    jb = jacobian_norms(layer, inp, reduce="none", hx=hx)  # (B, T)
    jb = jb if jb.dim() == 2 else jb[None]  # one unbatched sequence: (1, T)
    jm = jb.mean(0)
    n = memory_length(jm, threshold)
    row("gradient memory length", f"{n} of {T - 1} steps", n >= T - 1,
        f"‖∂s_T/∂s_t‖ ≥ {threshold:g} for {n} steps back"
        + ("" if n >= T - 1 else ": vanishing gradients"))
    top = float(jm.max())
    row("exploding", f"max ‖∂s_T/∂s_t‖ = {top:.3g}", top <= 1 / threshold,
        "" if top <= 1 / threshold else "the Jacobian product grows: clip gradients")
    S = 2 * H if layer.mode == "LSTM" else H
    k = min(lyapunov_k, S)
    lam = lyapunov_spectrum(layer, inp, k=k, hx=hx)
    lam1 = float(lam[0])
    row("Lyapunov λ₁", f"{lam1:.4g} /step", lam1 <= 0,
        (f"memory time scale 1/|λ₁| = {memory_time_scale(lam1):.3g} steps" if lam1 <= 0
         else "perturbations grow: exploding gradients / chaotic dynamics"))
    c_path = None
    if layer.mode == "LSTM":
        c_path = jacobian_norms(layer, inp, path="c", hx=hx)
        row("cell-state highway", f"‖∏f‖ over {T - 1} steps = {float(c_path[0]):.3g}", True,
            f"memory length on the c path alone: {memory_length(c_path, threshold)} steps")
    grad_h = None
    if batch is not None and task_kind is not None:
        grad_h = _loss_gradient(model, layer, batch, task_kind)
        g0, gT = float(grad_h[0]), float(grad_h[-1])
        ratio = g0 / gT if gT > 0 else math.inf
        fine = math.isfinite(ratio) and ratio <= 1 / threshold
        row("loss gradient ‖∂L/∂h_t‖", f"t=0: {g0:.3g}, t=T−1: {gT:.3g}", fine,
            f"telemetry, one backward of the {task_kind} loss; stays ≥ {threshold:g}× the "
            f"last step's for {memory_length(grad_h, threshold)} steps back"
            + ("" if fine else "; exploding / non-finite: clip gradients"))
    return {"rows": rows, "probes": {"jacobian": jm, "jacobian_batch": jb, "c_path": c_path,
                                     "spectral": spec, "lyapunov": lam, "gates": gates,
                                     "grad_h": grad_h}}


def _loss_gradient(model: nn.Module, layer: RNNBase, batch, task_kind: str) -> Tensor:
    """(T,) batch-mean ‖∂L/∂h_t‖ of the last layer (direction 0), recorded by rnnlab.trace
    during one backward pass of the task's loss (model in eval mode; its .grad left clear)."""
    from ..losses import loss_and_metrics

    name = next(n for n, m in model.named_modules() if m is layer)
    was_training = model.training
    model.eval()
    try:
        with trace(model) as tr:
            loss, _ = loss_and_metrics(model, task_kind, batch)
            loss.backward()
        grad_h = tr[name].calls[0].grad_h  # the first call: the encoder of a seq2seq model
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return grad_h[(layer.num_layers - 1) * layer.num_directions].detach().double().cpu()
