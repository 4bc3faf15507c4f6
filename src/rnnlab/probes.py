"""Diagnostics: Jacobian products, spectra, Lyapunov exponents, gate statistics, memory length.

The theory explains vanishing and exploding gradients with a handful of quantities; this file
computes each of them for any rnnlab ``RNN`` / ``LSTM`` / ``GRU`` (trained or not), or for a
model that contains one (``model.backbone``, or the single rnnlab recurrent layer inside it).

What ``x`` is
-------------
- For a bare recurrent layer: the layer's input, **batch-first** (B, T, I) whatever the layer's
  ``batch_first`` flag, or one sequence (T, I).
- For a model: exactly what the model's ``forward`` takes first (token ids (B, T) for a language
  model or classifier, features (B, T, F) for a regressor). The probe calls ``model(x)`` once
  (no grad) with a hook on the recurrent layer that captures the layer's real input (after the
  embedding) and initial state, then stops the forward pass. Dropout is not applied.

Every probe re-runs the recurrence itself from the layer's weights, by default in float64, with
the step equations of ``rnnlab.cells`` (notation of DESIGN.md, torch's gate orders):

    RNN:  h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM: i,f,g,o = σ,σ,tanh,σ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh);
          c_t = f⊙c_{t-1} + i⊙g;  h_t = o⊙tanh(c_t)
    GRU:  r,z = σ(...);  n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn));  h_t = (1−z)⊙n + z⊙h_{t-1}

Time index: steps are numbered t = 0..T−1 and h_t is the state *after* step t, so the final
state is h_{T−1} (the theory's h_T). The step Jacobian J_t = ∂s_t/∂s_{t-1} is analytic:

    RNN:  J_t = diag(φ'(a_t)) W_hh                              (tanh' = 1 − h_t², relu' = [a>0])
    GRU:  J_t = diag(z) + diag(h_{t-1} − n) diag(z(1−z)) W_hz
                + diag((1−z)(1−n²)) [diag(r) W_hn + diag(W_hn h_{t-1} + b_hn) diag(r(1−r)) W_hr]
    LSTM: state s = (h, c), a 2H × 2H Jacobian
          ∂c_t/∂h_{t-1} = diag(c_{t-1} f(1−f)) W_hf + diag(g i(1−i)) W_hi + diag(i(1−g²)) W_hg
          ∂c_t/∂c_{t-1} = diag(f_t)                                    (the cell-state highway)
          ∂h_t/∂h_{t-1} = diag(tanh(c_t) o(1−o)) W_ho + diag(o(1−tanh²c_t)) ∂c_t/∂h_{t-1}
          ∂h_t/∂c_{t-1} = diag(o(1−tanh²c_t) f_t)

Multi-layer / bidirectional: the Jacobian and Lyapunov probes use the recurrence of the **last
layer** (its own state; the lower layers only shape its input), direction 0 by default
(``direction=1`` is the reverse direction, whose steps are counted in its processing order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .layers import RNNBase

__all__ = ["find_recurrent", "jacobian_norms", "spectral", "lyapunov_spectrum",
           "memory_time_scale", "gate_stats", "memory_length", "checklist", "SATURATION",
           "HIST_BINS"]

SATURATION = 0.05  # σ gates saturated below 0.05 or above 0.95; tanh units where |v| > 0.95
HIST_BINS = 20  # fixed histogram bins: [0, 1] for σ gates, [−1, 1] for tanh activations
_SIGMOID_GATES = {"i", "f", "o", "r", "z"}


# ---- finding the layer and its real inputs ------------------------------------------------------
def find_recurrent(module: nn.Module) -> RNNBase:
    """The rnnlab RNN/LSTM/GRU inside ``module``: itself, ``module.backbone``, or the only one."""
    if isinstance(module, RNNBase):
        return module
    backbone = getattr(module, "backbone", None)
    if isinstance(backbone, RNNBase):
        return backbone
    found = [m for m in module.modules() if isinstance(m, RNNBase)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"{type(module).__name__} contains no rnnlab RNN/LSTM/GRU layer")
    raise ValueError(f"{type(module).__name__} contains {len(found)} rnnlab recurrent layers; "
                     "pass the one to probe (e.g. model.encoder)")


class _Captured(Exception):
    """Raised inside the forward pre-hook to stop a model's forward once the input is seen."""


def _layer_inputs(module: nn.Module, x: Tensor, hx=None):
    """(layer, x (B, T, I), h0 (L·D, B, H) | None, c0 | None) for a layer or a model."""
    layer = find_recurrent(module)
    if module is layer:
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"expected layer input (B, T, I) or (T, I), got {tuple(x.shape)}")
        h0, c0 = (hx if layer.mode == "LSTM" else (hx, None)) if hx is not None else (None, None)
        return layer, x, h0, c0
    seen = {}

    def hook(_mod, args, kwargs):
        seen["input"] = args[0] if args else kwargs.get("input")
        seen["hx"] = args[1] if len(args) > 1 else kwargs.get("hx")
        raise _Captured

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    was_training = module.training
    module.eval()  # no dropout on the captured input
    try:
        with torch.no_grad():
            try:
                module(x)
            except TypeError:  # forward wants more (a seq2seq model): its encoder alone
                if not hasattr(module, "encode"):
                    raise
                module.encode(x, None)
    except _Captured:
        pass
    finally:
        handle.remove()
        module.train(was_training)
    if "input" not in seen:
        raise ValueError(f"{type(module).__name__}(x) never called its recurrent layer")
    inp = seen["input"]
    if isinstance(inp, PackedSequence):  # full-length sequences only (no padding to skip)
        inp, lengths = pad_packed_sequence(inp, batch_first=layer.batch_first)
        if int(lengths.min()) != int(lengths.max()):
            raise ValueError("the probes need equal-length sequences (no padding)")
    if inp.dim() == 2:
        inp = inp.unsqueeze(1 if not layer.batch_first else 0)
    if not layer.batch_first:
        inp = inp.transpose(0, 1)  # (T, B, I) -> (B, T, I)
    state = seen["hx"] if hx is None else hx
    h0, c0 = (state if layer.mode == "LSTM" else (state, None)) if state is not None else (None,
                                                                                           None)
    return layer, inp, h0, c0


# ---- the trajectory ---------------------------------------------------------------------------
@dataclass
class _Record:
    """One layer and direction along the trajectory; tensors (B, T, ·) in processing order."""

    layer: int
    direction: int
    h: Tensor  # (B, T, H): h_t after step t
    h_prev: Tensor  # (B, T, H): h_{t-1} before step t (h0 at t = 0)
    c: Tensor | None  # (B, T, H): LSTM c_t
    c_prev: Tensor | None  # (B, T, H): LSTM c_{t-1}
    gates: dict  # name -> (B, T, H) post-activation gates (RNN: {"h": h_t})
    hn: Tensor | None  # (B, T, H): GRU W_hn h_{t-1} + b_hn


def _sig(v: Tensor) -> Tensor:
    return torch.sigmoid(v)


def _run_direction(layer: RNNBase, l: int, d: int, x: Tensor, h0: Tensor, c0: Tensor | None,
                   dtype) -> _Record:
    """Run one layer/direction over x (B, T, I) from (h0, c0), recording states and gates."""
    w_ih, w_hh, b_ih, b_hh = (None if w is None else w.detach().to(dtype)
                              for w in layer.weights(l, d))
    B, T, _ = x.shape
    if d == 1:
        x = x.flip(1)  # the reverse direction processes t = T−1 .. 0
    xw = x @ w_ih.t() + (b_ih if b_ih is not None else 0)  # W_ih x_t + b_ih: (B, T, G·H)
    bh = b_hh if b_hh is not None else torch.zeros(w_hh.shape[0], dtype=dtype, device=x.device)
    mode = layer.mode
    h, c = h0, c0
    hs, hps, cs, cps, hns = [], [], [], [], []
    gates: dict[str, list] = {}
    for t in range(T):
        hps.append(h)
        hw = h @ w_hh.t() + bh  # W_hh h_{t-1} + b_hh
        if mode == "RNN":
            a = xw[:, t] + hw  # a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
            h = torch.tanh(a) if layer.nonlinearity == "tanh" else torch.relu(a)  # h_t = φ(a_t)
            gates.setdefault("h", []).append(h)
        elif mode == "LSTM":
            ai, af, ag, ao = (xw[:, t] + hw).chunk(4, 1)
            i, f, g, o = _sig(ai), _sig(af), torch.tanh(ag), _sig(ao)
            cps.append(c)
            c = f * c + i * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
            h = o * torch.tanh(c)  # h_t = o ⊙ tanh(c_t)
            cs.append(c)
            for name, v in zip("ifgo", (i, f, g, o), strict=True):
                gates.setdefault(name, []).append(v)
        else:  # GRU
            xr, xz, xn = xw[:, t].chunk(3, 1)
            hr, hz, hn = hw.chunk(3, 1)
            r, z = _sig(xr + hr), _sig(xz + hz)  # r, z = σ(W_i x + b_i + W_h h + b_h)
            n = torch.tanh(xn + r * hn)  # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
            h = (1 - z) * n + z * h  # h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
            hns.append(hn)
            for name, v in zip("rzn", (r, z, n), strict=True):
                gates.setdefault(name, []).append(v)
        hs.append(h)
    st = lambda seq: torch.stack(seq, 1) if seq else None  # list of (B, H) -> (B, T, H)
    return _Record(l, d, st(hs), st(hps), st(cs), st(cps),
                   {k: st(v) for k, v in gates.items()}, st(hns))


def _trajectory(module: nn.Module, x: Tensor, hx=None, dtype=torch.float64,
                layers: str = "last", direction: int = 0):
    """(layer, records): run every layer (the lower ones feed the last); records of the last
    layer's ``direction`` (layers="last") or of every layer and direction (layers="all")."""
    layer, inp, h0, c0 = _layer_inputs(module, x, hx)
    inp = inp.detach().to(dtype)
    B = inp.shape[0]
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    if direction not in range(D):
        raise ValueError(f"direction must be in 0..{D - 1}, got {direction}")
    zeros = inp.new_zeros(L * D, B, H)
    h0 = zeros if h0 is None else h0.detach().to(dtype).reshape(L * D, B, H)
    if layer.mode == "LSTM":
        c0 = zeros if c0 is None else c0.detach().to(dtype).reshape(L * D, B, H)
    records = []
    for l in range(L):
        outs = []
        for d in range(D):
            k = l * D + d
            rec = _run_direction(layer, l, d, inp, h0[k], None if c0 is None else c0[k], dtype)
            outs.append(rec.h.flip(1) if d == 1 else rec.h)  # back to input time order
            if layers == "all" or (l == L - 1 and d == direction):
                records.append(rec)
        inp = torch.cat(outs, 2) if D == 2 else outs[0]
    return layer, records


# ---- step Jacobians ---------------------------------------------------------------------------
def _blocks(w_hh: Tensor, n: int) -> list[Tensor]:
    return list(w_hh.chunk(n, 0))


def _step_jacobian(layer: RNNBase, rec: _Record, w_hh: Tensor, t: int) -> Tensor:
    """J_t = ∂s_t/∂s_{t-1}: (B, S, S), S = H (RNN, GRU) or 2H (LSTM, state (h, c))."""
    dg = lambda v: torch.diag_embed(v)  # (B, H) -> (B, H, H)
    mode = layer.mode
    if mode == "RNN":
        h = rec.h[:, t]
        dphi = 1 - h * h if layer.nonlinearity == "tanh" else (h > 0).to(h.dtype)
        return dphi.unsqueeze(2) * w_hh  # diag(φ'(a_t)) W_hh
    if mode == "GRU":
        W_r, W_z, W_n = _blocks(w_hh, 3)
        r, z, n = (rec.gates[k][:, t] for k in "rzn")
        hp, hn = rec.h_prev[:, t], rec.hn[:, t]
        dn = (1 - z) * (1 - n * n)  # ∂h_t/∂(pre-tanh n) = (1 − z)(1 − n²)
        J = dg(z)  # the z ⊙ h_{t-1} path
        J = J + ((hp - n) * z * (1 - z)).unsqueeze(2) * W_z  # via z
        J = J + (dn * r).unsqueeze(2) * W_n  # via n, W_hn h inside r ⊙ (...)
        J = J + (dn * hn * r * (1 - r)).unsqueeze(2) * W_r  # via n, through r
        return J
    W_i, W_f, W_g, W_o = _blocks(w_hh, 4)
    i, f, g, o = (rec.gates[k][:, t] for k in "ifgo")
    c, cp = rec.c[:, t], rec.c_prev[:, t]
    tc = torch.tanh(c)
    dc_dh = ((cp * f * (1 - f)).unsqueeze(2) * W_f + (g * i * (1 - i)).unsqueeze(2) * W_i
             + (i * (1 - g * g)).unsqueeze(2) * W_g)  # ∂c_t/∂h_{t-1}
    dc_dc = dg(f)  # ∂c_t/∂c_{t-1} = diag(f_t)
    oc = o * (1 - tc * tc)  # ∂h_t/∂c_t = o ⊙ tanh'(c_t)
    dh_dh = (tc * o * (1 - o)).unsqueeze(2) * W_o + oc.unsqueeze(2) * dc_dh  # ∂h_t/∂h_{t-1}
    dh_dc = dg(oc * f)  # ∂h_t/∂c_{t-1}
    top = torch.cat((dh_dh, dh_dc), 2)
    bottom = torch.cat((dc_dh, dc_dc), 2)
    return torch.cat((top, bottom), 1)  # rows (h_t, c_t), columns (h_{t-1}, c_{t-1})


def _last_w_hh(layer: RNNBase, rec: _Record, dtype) -> Tensor:
    return layer.weights(rec.layer, rec.direction)[1].detach().to(dtype)


def _reduce(v: Tensor, reduce: str, batched: bool) -> Tensor:
    if reduce == "none":
        return v if batched else v[0]
    if reduce == "mean":
        return v.mean(0)
    raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")


def jacobian_norms(module: nn.Module, x: Tensor, *, path: str = "state", reduce: str = "mean",
                   direction: int = 0, hx=None, dtype=torch.float64) -> Tensor:
    """‖∂s_{T−1}/∂s_t‖₂ for t = 0..T−1: how much of a perturbation of the state after step t
    survives to the final state (spectral norm of the exact Jacobian product
    J_{T−1} ··· J_{t+1}; the t = T−1 entry is ‖I‖ = 1).

    This is the theory's ‖∂h_T/∂h_t‖ with the final state called h_{T−1} (0-based steps): the
    product has T−1−t factors, so for the RNN it is bounded by σ_max(W_hh)^(T−1−t).

    path: "state" (default): the layer's whole state, h for RNN/GRU, (h, c) for the LSTM
          (a 2H × 2H Jacobian); "h": for the LSTM the h→h block of that product, ∂h_{T−1}/∂h_t
          with c_t held fixed (same as "state" for RNN/GRU); "c": LSTM only, the cell-state
          highway alone, ∏_{k=t+1}^{T−1} diag(f_k) (norm = max over units) — the theory's
          ∂c_T/∂c_t = ∏ f_k, equal to f^(T−1−t) for a constant forget gate f.
    reduce: "mean" (default) averages the per-example norms over the batch -> (T,);
            "none" -> (B, T) for a batch, (T,) for one (T, I) sequence.
    For multi-layer layers the last layer's own recurrence (direction ``direction``) is used.
    """
    layer, (rec,) = _trajectory(module, x, hx, dtype, "last", direction)
    batched = not (module is layer and x.dim() == 2)
    if path not in ("state", "h", "c"):
        raise ValueError(f"path must be 'state', 'h' or 'c', got {path!r}")
    if path == "c" and layer.mode != "LSTM":
        raise ValueError("path='c' (the cell-state highway) exists for the LSTM only")
    B, T, H = rec.h.shape
    out = rec.h.new_empty(B, T)
    out[:, T - 1] = 1.0
    if path == "c":
        p = rec.h.new_ones(B, H)
        for t in range(T - 2, -1, -1):
            p = p * rec.gates["f"][:, t + 1]  # ∏_{k=t+1}^{T−1} f_k
            out[:, t] = p.abs().amax(1)
        return _reduce(out, reduce, batched)
    w_hh = _last_w_hh(layer, rec, dtype)
    S = 2 * H if layer.mode == "LSTM" else H
    P = torch.eye(S, dtype=dtype, device=rec.h.device).expand(B, S, S)
    for t in range(T - 2, -1, -1):
        P = P @ _step_jacobian(layer, rec, w_hh, t + 1)  # ∂s_{T−1}/∂s_t = ∂s_{T−1}/∂s_{t+1} J_{t+1}
        block = P[:, :H, :H] if path == "h" else P
        out[:, t] = torch.linalg.matrix_norm(block, ord=2)
    return _reduce(out, reduce, batched)


# ---- spectra of W_hh --------------------------------------------------------------------------
def _regime(sigma_max: float, tol: float = 1e-6) -> str:
    if sigma_max < 1 - tol:
        return "vanishing"
    if sigma_max <= 1 + tol:
        return "critical"
    return "may explode"


def spectral(module: nn.Module) -> list[dict]:
    """Singular values and eigenvalues of every recurrent matrix W_hh, per layer and direction:
    the whole matrix (block "W_hh", G·H × H) and, for LSTM/GRU, each square gate block
    (LSTM "i","f","g","o", GRU "r","z","n"; the RNN's W_hh is its one block).

    Returns a list of dicts {layer, direction, block, shape, sigma_max, spectral_radius (None for
    the non-square whole matrix of a gated cell), regime, singular_values (Tensor), eigenvalues
    (complex Tensor | None)}.

    σ_max vs spectral radius ρ: the step Jacobian of a tanh (or relu) RNN is diag(φ') W_hh with
    0 ≤ φ' ≤ 1, so every step shrinks a perturbation by at most σ_max(W_hh) and
    ‖∂h_T/∂h_t‖ ≤ σ_max^(T−t): σ_max < 1 *guarantees* vanishing ("vanishing"); σ_max > 1 allows
    growth ("may explode" — it is not certain, φ' < 1 may still damp it); σ_max = 1 (±1e-6, e.g.
    an orthogonal W_hh) is "critical". ρ = max |eigenvalue| ≤ σ_max is the *asymptotic* per-step
    growth of the linearised map (‖W^n‖^(1/n) → ρ): with ρ < 1 < σ_max a non-normal W_hh can grow
    a perturbation for a while and still shrink it in the long run. For gate blocks the regime
    uses the same rule as an indication only: a gated cell's Jacobian mixes several blocks with
    the gates' derivatives (see ``jacobian_norms`` for the exact product).
    """
    layer = find_recurrent(module)
    H = layer.hidden_size
    names = {"RNN": (), "LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}[layer.mode]
    rows = []
    for l in range(layer.num_layers):
        for d in range(layer.num_directions):
            w = layer.weights(l, d)[1].detach().double()
            blocks = [("W_hh", w)]  # the whole matrix; the RNN's is its one block
            if names:
                blocks += list(zip(names, w.split(H, 0), strict=True))  # one H×H block per gate
            for name, m in blocks:
                sv = torch.linalg.svdvals(m)
                square = m.shape[0] == m.shape[1]
                ev = torch.linalg.eigvals(m) if square else None
                smax = float(sv[0])
                rows.append({
                    "layer": l, "direction": d, "block": name, "shape": tuple(m.shape),
                    "sigma_max": smax,
                    "spectral_radius": float(ev.abs().max()) if square else None,
                    "regime": _regime(smax), "singular_values": sv, "eigenvalues": ev,
                })
    return rows


# ---- Lyapunov exponents -----------------------------------------------------------------------
def lyapunov_spectrum(module: nn.Module, x: Tensor, k: int | None = None,
                      warmup: int | None = None, *, reduce: str = "mean", direction: int = 0,
                      hx=None, dtype=torch.float64, seed: int = 0) -> Tensor:
    """The k largest Lyapunov exponents (natural log, per step) of the last layer's state map
    along the trajectory driven by x, by the QR method:

        Q_0 random orthonormal (S × k);  for each step t:  J_t Q_{t−1} = Q_t R_t  (QR)
        λ_i = mean over t ≥ warmup of log |(R_t)_ii|

    The first ``warmup`` steps (default min(T // 4, 100)) only align Q with the dynamics.
    λ₁ < 0: perturbations (and gradients) shrink like e^(λ₁ n) — memory time scale 1/|λ₁| steps
    (``memory_time_scale``); λ₁ > 0: they grow (exploding gradients, chaos). Since each
    |R_11| = ‖J_t q‖ ≤ ‖J_t‖ ≤ σ_max(W_hh) for a tanh RNN, λ₁ ≤ ln σ_max(W_hh).
    Returns (k,) sorted descending (mean over the batch), or (B, k) with reduce="none".
    A zero |R_ii| (e.g. dead relu units) is clamped to the smallest positive float.
    """
    layer, (rec,) = _trajectory(module, x, hx, dtype, "last", direction)
    batched = not (module is layer and x.dim() == 2)
    B, T, H = rec.h.shape
    S = 2 * H if layer.mode == "LSTM" else H
    k = S if k is None else k
    if not 1 <= k <= S:
        raise ValueError(f"k must be in 1..{S} (the state size), got {k}")
    warmup = min(T // 4, 100) if warmup is None else warmup
    if not 0 <= warmup < T:
        raise ValueError(f"warmup must be in 0..{T - 1}, got {warmup}")
    w_hh = _last_w_hh(layer, rec, dtype)
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(S, k, generator=gen, dtype=dtype))[0]
    Q = Q.to(rec.h.device).expand(B, S, k)
    tiny = torch.finfo(dtype).tiny
    acc = rec.h.new_zeros(B, k)
    for t in range(T):
        Q, R = torch.linalg.qr(_step_jacobian(layer, rec, w_hh, t) @ Q)  # J_t Q = Q' R
        if t >= warmup:
            acc += R.diagonal(dim1=1, dim2=2).abs().clamp_min(tiny).log()  # log |R_ii|
    lams = (acc / (T - warmup)).sort(dim=1, descending=True).values
    return _reduce(lams, reduce, batched)


def memory_time_scale(lambda1: float) -> float:
    """1/|λ₁|: the number of steps over which a perturbation changes by a factor e."""
    return math.inf if lambda1 == 0 else 1.0 / abs(float(lambda1))


# ---- gate statistics --------------------------------------------------------------------------
def _saturated(name: str, v: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """Saturation rule (the telemetry's): σ gates v < 0.05 or v > 0.95; tanh activations (g, n,
    RNN h) |v| > 0.95; relu RNN h: dead units, v = 0 (relu'(a) = 0)."""
    if name in _SIGMOID_GATES:
        return (v < SATURATION) | (v > 1 - SATURATION)
    if name == "h" and nonlinearity == "relu":
        return v == 0
    return v.abs() > 1 - SATURATION


def gate_stats(module: nn.Module, x: Tensor, *, hx=None, bins: int = HIST_BINS) -> dict:
    """Statistics of every gate of every layer and direction along the trajectory driven by x.

    Gates: LSTM i, f, g, o; GRU r, z, n; the RNN has none, so its activation h_t = φ(a_t) is
    reported as "h". Laid out like the engine's telemetry (``rnnlab.trace``), rows k = l·D + d:

        {gate: {"mean": (L·D, T) mean over batch and units at each step,
                "saturated": (L·D, T) fraction saturated at each step,
                "hist": (L·D, T, bins) fraction of values in each bin at each step,
                "run_mean": (L·D,), "run_saturated": (L·D,), "run_hist": (L·D, bins)
                            the same over the whole run (all steps, batch and units),
                "edges": (bins + 1,) fixed bin edges: [0, 1] for σ gates, [−1, 1] for tanh
                         (relu h: [0, max])}}

    Saturation, the telemetry's rule: σ gates (i, f, o, r, z) below 0.05 or above 0.95; tanh
    activations (g, n, RNN h) where |v| > 0.95 (their derivative 1 − v² < 0.1); a relu RNN's h
    where it is 0 (dead units). Steps are in input order t = 0..T−1, also for the reverse
    direction (as in the telemetry).
    """
    layer, recs = _trajectory(module, x, hx, torch.float64, "all")
    out: dict[str, dict] = {}
    for name in recs[0].gates:
        vals = torch.stack([r.gates[name].flip(1) if r.direction == 1 else r.gates[name]
                            for r in recs])  # (L·D, B, T, H), input time order
        if name in _SIGMOID_GATES:
            lo, hi = 0.0, 1.0
        elif layer.mode == "RNN" and layer.nonlinearity == "relu":
            lo, hi = 0.0, max(float(vals.max()), 1e-12)
        else:
            lo, hi = -1.0, 1.0
        edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
        idx = ((vals - lo) / (hi - lo) * bins).floor().clamp(0, bins - 1).long()
        onehot = torch.nn.functional.one_hot(idx, bins).double()  # (L·D, B, T, H, bins)
        sat = _saturated(name, vals, layer.nonlinearity).double()
        out[name] = {
            "mean": vals.mean((1, 3)).float(),
            "saturated": sat.mean((1, 3)).float(),
            "hist": onehot.mean((1, 3)).float(),
            "run_mean": vals.mean((1, 2, 3)).float(),
            "run_saturated": sat.mean((1, 2, 3)).float(),
            "run_hist": onehot.mean((1, 2, 3)).float(),
            "edges": edges.float(),
        }
    return out


# ---- memory length ----------------------------------------------------------------------------
def memory_length(grad_norms, threshold: float = 1e-3) -> int:
    """How many steps back the gradient stays at or above ``threshold`` × its value at the loss.

    grad_norms: (T,) per-step norms in time order with the loss at the end (the last entry, e.g.
    ``jacobian_norms`` whose last entry is 1, or a telemetry row ``tr.grad_h[k]`` for a loss on
    the final step). Returns the largest n such that g[T−1−j] ≥ threshold·g[T−1] for every
    j = 0..n (the first dip below ends the count), so n ≤ T−1; T−1 means "at least the whole
    window". For g[t] = r^(T−1−t), r < 1: n = min(T−1, ⌊ln threshold / ln r⌋).
    """
    g = torch.as_tensor(grad_norms, dtype=torch.float64).detach().cpu()
    if g.dim() != 1 or g.numel() == 0:
        raise ValueError(f"grad_norms must be a non-empty 1-D sequence, got shape {tuple(g.shape)}")
    ref = g[-1]
    back = g.flip(0)  # back[j] = g[T−1−j]
    below = ~(back >= threshold * ref)  # NaN counts as below
    if not bool(below.any()):
        return len(g) - 1
    first = int(below.nonzero()[0, 0])  # first step back that dips below
    return max(first - 1, 0)


# ---- the RNN debugging checklist ---------------------------------------------------------------
def checklist(model: nn.Module, x: Tensor, *, threshold: float = 1e-3,
              saturation_warn: float = 0.5, lyapunov_k: int = 8, batch=None,
              task_kind: str | None = None) -> dict:
    """The course notes' RNN debugging checklist, automated, on input ``x`` (what the model's
    forward takes: token ids (B, T), or features). Returns {"rows": [...], "probes": {...}}:

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
    layer, inp, _, _ = _layer_inputs(model, x)
    B, T, I = inp.shape
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    rows = []

    def row(check, value, ok, note=""):
        rows.append({"check": check, "value": value, "status": "ok" if ok else "warn",
                     "note": note})

    row("shapes", f"x {tuple(x.shape)} -> {layer.mode} input ({B}, {T}, {I}) -> "
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

    gates = gate_stats(layer, inp)
    for name, g in gates.items():
        frac = float(g["run_saturated"].mean())
        rule = ("σ < 0.05 or > 0.95" if name in _SIGMOID_GATES else
                "h = 0 (dead)" if layer.nonlinearity == "relu" and name == "h" else "|v| > 0.95")
        row(f"saturation {name}", f"{frac:.1%}", frac <= saturation_warn,
            f"mean {float(g['run_mean'].mean()):.3f}; saturated: {rule}")

    jb = jacobian_norms(layer, inp, reduce="none")  # (B, T)
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
    lam = lyapunov_spectrum(layer, inp, k=k)
    lam1 = float(lam[0])
    row("Lyapunov λ₁", f"{lam1:.4g} /step", lam1 <= 0,
        (f"memory time scale 1/|λ₁| = {memory_time_scale(lam1):.3g} steps" if lam1 <= 0
         else "perturbations grow: exploding gradients / chaotic dynamics"))
    c_path = None
    if layer.mode == "LSTM":
        c_path = jacobian_norms(layer, inp, path="c")
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
    from .losses import loss_and_metrics
    from .telemetry import trace

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
