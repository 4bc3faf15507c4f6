"""Jacobian products through time, spectra of W_hh, Lyapunov exponents and memory length.

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
They need the final state of every sequence at the same step: a PackedSequence must hold
sequences of one length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .trajectory import Record, find_recurrent, trajectory


# ---- step Jacobians ---------------------------------------------------------------------------
def _step_jacobian(layer, rec: Record, t: int) -> Tensor:
    """J_t = ∂s_t/∂s_{t-1}: (B, S, S), S = H (RNN, GRU) or 2H (LSTM, state (h, c))."""
    dg = lambda v: torch.diag_embed(v)  # (B, H) -> (B, H, H)
    mode, w_hh = layer.mode, rec.w_hh
    if mode == "RNN":
        h = rec.h[:, t]
        dphi = 1 - h * h if layer.nonlinearity == "tanh" else (h > 0).to(h.dtype)
        return dphi.unsqueeze(2) * w_hh  # diag(φ'(a_t)) W_hh
    if mode == "GRU":
        W_r, W_z, W_n = w_hh.chunk(3, 0)
        r, z, n = (rec.gates[k][:, t] for k in "rzn")
        hp, hn = rec.h_prev[:, t], rec.hn[:, t]
        dn = (1 - z) * (1 - n * n)  # ∂h_t/∂(pre-tanh n) = (1 − z)(1 − n²)
        J = dg(z)  # the z ⊙ h_{t-1} path
        J = J + ((hp - n) * z * (1 - z)).unsqueeze(2) * W_z  # via z
        J = J + (dn * r).unsqueeze(2) * W_n  # via n, W_hn h inside r ⊙ (...)
        J = J + (dn * hn * r * (1 - r)).unsqueeze(2) * W_r  # via n, through r
        return J
    W_i, W_f, W_g, W_o = w_hh.chunk(4, 0)
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


def _reduce(v: Tensor, reduce: str, batched: bool) -> Tensor:
    if reduce == "none":
        return v if batched else v[0]
    if reduce == "mean":
        return v.mean(0)
    raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")


def jacobian_norms(module: nn.Module, x, *, path: str = "state", reduce: str = "mean",
                   direction: int = 0, hx=None, dtype=torch.float64) -> Tensor:
    """‖∂s_{T−1}/∂s_t‖₂ for t = 0..T−1: how much of a perturbation of the state after step t
    survives to the final state, the spectral norm of the exact Jacobian product

        ∂s_{T−1}/∂s_t = J_{T−1} ··· J_{t+1}      (the t = T−1 entry is ‖I‖ = 1)

    This is the theory's ‖∂h_T/∂h_t‖ with the final state called h_{T−1} (0-based steps): the
    product has T−1−t factors, so for the RNN it is bounded by σ_max(W_hh)^(T−1−t).

    path: "state" (default): the layer's whole state, h for RNN/GRU, (h, c) for the LSTM
          (a 2H × 2H Jacobian); "h": for the LSTM the h→h block of that product, ∂h_{T−1}/∂h_t
          with c_t held fixed (same as "state" for RNN/GRU); "c": LSTM only, the cell-state
          highway alone, ∏_{k=t+1}^{T−1} diag(f_k) (norm = max over units) — the theory's
          ∂c_T/∂c_t = ∏ f_k, equal to f^(T−1−t) for a constant forget gate f.
    reduce: "mean" (default) averages the per-example norms over the batch; "none" keeps them.
    direction: of the last layer (1: the reverse one, steps in its processing order).
    dtype: the trajectory is re-run in this dtype (float64 by default).
    Inputs: module, x, hx
        * **module**: an rnnlab RNN / LSTM / GRU, or a model containing one (``rnnlab.probes``).
        * **x**: exactly what ``module`` takes. A layer: (T, B, I), or (B, T, I) with
          ``batch_first=True``, or one sequence (T, I), or a PackedSequence of equal-length
          sequences; a model: its own input (token ids, features).
        * **hx**: the layer's initial state as it takes it, h_0 (L·D, B, H) or (h_0, c_0);
          default: what the model passes it, zeros for a layer.
    Outputs: norms
        * **norms**: (T,) for reduce="mean"; (B, T) for reduce="none" ((T,) for one sequence).
    """
    layer, (rec,), batched = trajectory(module, x, hx, dtype, "last", direction, True)
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
    S = 2 * H if layer.mode == "LSTM" else H
    P = torch.eye(S, dtype=dtype, device=rec.h.device).expand(B, S, S)
    for t in range(T - 2, -1, -1):
        P = P @ _step_jacobian(layer, rec, t + 1)  # ∂s_{T−1}/∂s_t = ∂s_{T−1}/∂s_{t+1} J_{t+1}
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

    σ_max vs spectral radius ρ: the step Jacobian of a tanh (or relu) RNN is diag(φ') W_hh with
    0 ≤ φ' ≤ 1, so every step shrinks a perturbation by at most σ_max(W_hh) and
    ‖∂h_T/∂h_t‖ ≤ σ_max^(T−t): σ_max < 1 *guarantees* vanishing ("vanishing"); σ_max > 1 allows
    growth ("may explode" — it is not certain, φ' < 1 may still damp it); σ_max = 1 (±1e-6, e.g.
    an orthogonal W_hh) is "critical". ρ = max |eigenvalue| ≤ σ_max is the *asymptotic* per-step
    growth of the linearised map (‖W^n‖^(1/n) → ρ): with ρ < 1 < σ_max a non-normal W_hh can grow
    a perturbation for a while and still shrink it in the long run. For gate blocks the regime
    uses the same rule as an indication only: a gated cell's Jacobian mixes several blocks with
    the gates' derivatives (see ``jacobian_norms`` for the exact product).

    Inputs: module
        * **module**: an rnnlab RNN / LSTM / GRU, or a model containing one (no input needed).
    Outputs: rows
        * **rows**: a list of dicts {layer, direction, block, shape, sigma_max, spectral_radius
          (None for the non-square whole matrix of a gated cell), regime, singular_values
          (Tensor), eigenvalues (complex Tensor | None)}.
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
def lyapunov_spectrum(module: nn.Module, x, k: int | None = None,
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
    A zero |R_ii| (e.g. dead relu units) is clamped to the smallest positive float.
    k: 1..S, S = H (2H for the LSTM's (h, c)); default S. seed: of Q_0.
    Inputs: module, x, hx
        * **module**: an rnnlab RNN / LSTM / GRU, or a model containing one (``rnnlab.probes``).
        * **x**: exactly what ``module`` takes. A layer: (T, B, I), or (B, T, I) with
          ``batch_first=True``, or one sequence (T, I), or a PackedSequence of equal-length
          sequences; a model: its own input (token ids, features).
        * **hx**: the layer's initial state as it takes it, h_0 (L·D, B, H) or (h_0, c_0);
          default: what the model passes it, zeros for a layer.
    Outputs: lambdas
        * **lambdas**: (k,) sorted descending, the mean over the batch (reduce="mean"), or
          (B, k) with reduce="none" ((k,) for one sequence).
    """
    layer, (rec,), batched = trajectory(module, x, hx, dtype, "last", direction, True)
    B, T, H = rec.h.shape
    S = 2 * H if layer.mode == "LSTM" else H
    k = S if k is None else k
    if not 1 <= k <= S:
        raise ValueError(f"k must be in 1..{S} (the state size), got {k}")
    warmup = min(T // 4, 100) if warmup is None else warmup
    if not 0 <= warmup < T:
        raise ValueError(f"warmup must be in 0..{T - 1}, got {warmup}")
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(S, k, generator=gen, dtype=dtype))[0]
    Q = Q.to(rec.h.device).expand(B, S, k)
    tiny = torch.finfo(dtype).tiny
    acc = rec.h.new_zeros(B, k)
    for t in range(T):
        Q, R = torch.linalg.qr(_step_jacobian(layer, rec, t) @ Q)  # J_t Q = Q' R
        if t >= warmup:
            acc += R.diagonal(dim1=1, dim2=2).abs().clamp_min(tiny).log()  # log |R_ii|
    lams = (acc / (T - warmup)).sort(dim=1, descending=True).values
    return _reduce(lams, reduce, batched)


def memory_time_scale(lambda1: float) -> float:
    """1/|λ₁|: the number of steps over which a perturbation changes by a factor e."""
    return math.inf if lambda1 == 0 else 1.0 / abs(float(lambda1))


# ---- memory length ----------------------------------------------------------------------------
def memory_length(grad_norms, threshold: float = 1e-3) -> int:
    """How many steps back the gradient stays at or above ``threshold`` × its value at the loss.

    Returns the largest n such that g[T−1−j] ≥ threshold·g[T−1] for every j = 0..n (the first
    dip below ends the count), so n ≤ T−1; T−1 means "at least the whole window". For
    g[t] = r^(T−1−t), r < 1: n = min(T−1, ⌊ln threshold / ln r⌋).

    Inputs: grad_norms
        * **grad_norms**: (T,) per-step norms in time order with the loss at the end (the last
          entry), e.g. ``jacobian_norms`` (whose last entry is 1), or a telemetry row
          ``tr.grad_h[k]`` for a loss on the final step.
    Outputs: n (int)
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
