"""Runs a cell over time: a forward loop, then an explicit BPTT backward loop.

One ``torch.autograd.Function`` per layer and direction. Shapes are time-major inside:
x (T, B, I), outputs (T, B, H). Variable lengths come as ``batch_sizes`` (a PackedSequence's,
rows sorted by decreasing length): at step t only the first batch_sizes[t] rows are active.

Forward:  XW = W_ih x + b for all steps (one GEMM), then per step a = XW_t + W_hh h_{t-1}
          (one GEMM) and the cell's pointwise equations, written in place into preallocated
          time-major buffers (no autograd graph inside the loop).
Backward: the cell's local derivatives for all steps at once, then from the last processed
          step to the first
          ∂L/∂h_t = ∂L/∂h_t|local (from the loss and the layer above) + ∂L/∂h_{t+1} ∂h_{t+1}/∂h_t
          with ∂L/∂h_{t-1} += ∂L/∂a_t · W_hh (one GEMM per step) and, for the LSTM,
          ∂L/∂c_{t-1} = ∂L/∂c_t ⊙ f_t. The weight gradients are single GEMMs over all steps:
          ∂L/∂W_ih = Σ_t ∂L/∂a_tᵀ x_t,  ∂L/∂W_hh = Σ_t ∂L/∂a_tᵀ h_{t-1}.

State slots. h lives in a (T+1, B, H) buffer: the forward direction keeps h0 in slot 0 and h_t in
slot t+1, the reverse direction h_t in slot t and h0 in slot T; so step t reads h_{t-1} from one
slot and writes h_t to the next, the output is a contiguous view, and h_{t-1} of every step (for
∂L/∂W_hh) is another. ∂L/∂h uses the same layout: slot by slot it receives ∂L/∂h_t|local, then
the contribution of the step after, so when step t reads it, it holds the total ∂L/∂h_t.

Padding rows (packed input, rows beyond a step's batch size) of the output hold unspecified
finite values; everything downstream ignores them (their gradients are zero).

LSTM with a projection (torch's proj_size P > 0, W_hr (P, H)): the cell computes m_t = o ⊙ tanh(c_t)
into an (T, B, H) buffer and h_t = W_hr m_t (one GEMM per step) is the state: h lives in the
(T+1, B, P) buffer and the recurrent GEMM uses it. Backward, per step ∂L/∂m_t = ∂L/∂h_t W_hr
(one GEMM) feeds the cell's backward in place of ∂L/∂h_t, and ∂L/∂W_hr = Σ_t ∂L/∂h_tᵀ m_t is one
GEMM over all steps.

Empty problems (a batch of 0 rows, a hidden size of 0): outputs and states of the right empty
shapes, gradients zeros of the inputs' shapes, as torch's.

Double backward: a backward run with grad mode on (``create_graph=True``) does not use the
hand-written loop; it replays the forward from the saved inputs with the plain-autograd
reference (``rnnlab.equations.step``) and returns ``torch.autograd.grad`` of it with
``create_graph=True``, so the gradients are themselves differentiable (gradgradcheck, gradient
penalties, Hessian-vector products). The first-order backward is the loop above, unchanged.

Telemetry: when a tap (``rnnlab.telemetry``) is passed, the forward calls
``call = tap.record_forward(step, A, sizes)`` (A: the gates after activation, (T, B, G·H), or
h_t for the RNN) and the backward ``call.record_backward(dh, dc, sizes)`` with the total
∂L/∂h_t and ∂L/∂c_t of every step, (T, B, H) time-major buffers it fills anyway (with a projection
∂L/∂h_t is the gradient reaching the projected h_t, (T, B, P)). The double-backward replay
records the same quantities, taken from the replay's autograd.

Native kernels: on CPU (float32, float64) the same loops run compiled (``rnnlab/native.py``,
``rnnlab/kernels/``), filling the same buffers with the same equations; the loops below are the
readable reference, and what runs on CUDA, with a projection (proj_size) and for the double-backward
replay. ``RNNLAB_KERNELS=python`` makes them run everywhere.
"""


from __future__ import annotations

import torch
from torch import Tensor

from . import equations, native
from .gemm import adder, is_small, linear, t_matmul
from .masks import lengths_to_mask


def _cut(views, sizes: tuple[int, ...] | None, B: int) -> list:
    """Per-step views (one per t) cut to the step's active rows; ``sizes`` None: all rows."""
    if sizes is None:
        return list(views)
    return [v[:s] for v, s in zip(views, sizes, strict=True)]


def _steps(bufs, sizes, B, T) -> list[tuple]:
    """Several (T, B, ...) buffers -> one tuple of per-step views per t."""
    if not bufs:
        return [()] * T
    return list(zip(*(_cut(b.unbind(0), sizes, B) for b in bufs), strict=True))


_SMALL_BUFFER = 2**20  # elements: a (T, B, G·H) gate buffer this small stays in cache
_STAT_BLOCK = 2**17  # elements: gate statistics after the loop go by blocks of steps this big


class Recurrence(torch.autograd.Function):
    """One layer, one direction: (x, h0, c0, weights) -> (output, h_n, c_n)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, step, batch_sizes, reverse, tap):
        T, B, _ = x.shape
        n = step.n_chunks
        H = w_hh.shape[0] // n  # hidden size: c_t, the gates
        R = w_hh.shape[1]  # the size of h_t: H, or P with a projection W_hr (P, H)
        sizes = tuple(batch_sizes) if batch_sizes is not None else (B,) * T
        ctx.step, ctx.sizes, ctx.reverse, ctx.empty = step, sizes, reverse, B == 0 or H == 0
        if ctx.empty:  # nothing to compute: empty outputs, zero gradients (see backward)
            ctx.tap = None if tap is None else tap.record_forward(step, x.new_zeros(T, 2, n), sizes)
            ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
            return (x.new_zeros(T, B, R), x.new_zeros(B, R),
                    x.new_zeros(B, H) if step.has_cell else x.new_zeros(0))
        saturation = tap.saturation(step, x) if tap is not None else None  # (centre, limit)
        # the loop compiled (CPU, no projection), or None: _forward below
        kernel = native.kernel_for(x) if w_hr is None else None
        if kernel is not None:
            A, HS, CS, AUX, h_n, c_n, stats = kernel.forward(
                step, x, h0, c0, w_ih, w_hh, b_ih, b_hh, sizes, reverse, saturation)
            M = None
        else:
            A, HS, CS, AUX, M, h_n, c_n, stats = _forward(
                step, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, sizes, reverse, saturation)
        if tap is not None:  # the call's record, which the backward completes
            count = torch.tensor(sizes, dtype=x.dtype, device=x.device).clamp_min(1) * H
            tap = tap.record_forward(step, stats.div_(count.view(T, 1, 1)), sizes)
        ctx.tap, ctx.kernel = tap, kernel
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, A, HS, CS, AUX, M)
        out = HS[0:T] if reverse else HS[1 : T + 1]
        return out, h_n, (c_n if step.has_cell else h_n.new_zeros(0))

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn):
        saved = ctx.saved_tensors
        if ctx.empty:
            return _empty_backward(ctx, saved)
        # autograd runs a backward with grad mode on only for create_graph=True (double backward);
        # batched incoming gradients (vmap over the backward: jacobian(vectorize=True),
        # gradcheck's batched check) cannot go through the in-place loop either
        if torch.is_grad_enabled() or _batched(d_out, d_hn, d_cn):
            return _replay_backward(ctx, saved[:8], d_out, d_hn, d_cn)
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, A, HS, CS, AUX, M = saved
        step, sizes, tap, reverse = ctx.step, ctx.sizes, ctx.tap, ctx.reverse
        T, B, _ = x.shape
        G, R = w_hh.shape
        H = G // step.n_chunks
        cell = step.has_cell
        if ctx.kernel is not None:  # the loop compiled, the same buffers
            D_in, D_hid, DH, DC, dh0, dc0 = ctx.kernel.backward(
                step, A, HS, CS, AUX, w_hh, d_out, d_hn, d_cn, sizes, reverse, tap is not None)
        else:
            D_in, D_hid, DH, DC, dh0, dc0 = _backward(step, A, HS, CS, AUX, M, w_hh, w_hr, d_out,
                                                      d_hn, d_cn, sizes, reverse)
        wr = slice(0, T) if reverse else slice(1, T + 1)
        if tap is not None:
            tap.record_backward(DH[wr], DC, sizes)
        rd = slice(1, T + 1) if reverse else slice(0, T)

        need = ctx.needs_input_grad
        D_in2, D_hid2 = D_in.view(T * B, G), D_hid.view(T * B, G)
        dx = linear(D_in2, w_ih.t()).view(x.shape) if need[0] else None  # Σ ∂L/∂a_t W_ih
        dw_ih = t_matmul(D_in2, x.reshape(T * B, x.shape[2])) if need[3] else None
        dw_hh = t_matmul(D_hid2, HS[rd].reshape(T * B, R)) if need[4] else None
        db_ih = D_in2.sum(0) if (b_ih is not None and (need[5] or need[6])) else None
        if b_hh is not None and need[6]:  # RNN, LSTM: the same sum (b_ih, b_hh enter together)
            db_hh = D_hid2.sum(0) if (D_in is not D_hid or db_ih is None) else db_ih.clone()
        else:
            db_hh = None
        if not need[5]:
            db_ih = None
        dw_hr = None
        if M is not None and need[7]:  # ∂L/∂W_hr = Σ_t ∂L/∂h_tᵀ m_t, one GEMM over all steps
            dw_hr = t_matmul(DH[wr].reshape(T * B, R), M.view(T * B, H))
        return (dx, dh0 if need[1] else None, dc0 if (cell and need[2]) else None,
                dw_ih, dw_hh, db_ih, db_hh, dw_hr, None, None, None, None)


def _forward(step, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, sizes, reverse, saturation):
    """The forward loop: returns (A, HS, CS, AUX, M, h_n, c_n, stats): M the projection's m_t
    (None without W_hr), stats (T, 2, n) the sums and saturated counts of each gate per step
    (None without ``saturation``)."""
    T, B, _ = x.shape
    n = step.n_chunks
    H = w_hh.shape[0] // n  # hidden size: c_t, the gates
    R = w_hh.shape[1]  # the size of h_t: H, or P with a projection W_hr (P, H)
    cell, gru = step.has_cell, step.mode == "GRU"
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
    init = T if reverse else 0  # slot of the initial state
    rd = slice(1, T + 1) if reverse else slice(0, T)  # slots read:    h_{t-1} of step t
    wr = slice(0, T) if reverse else slice(1, T + 1)  # slots written: h_t

    packed = any(s != B for s in sizes)
    cut = sizes if packed else None  # per-step views are cut to the active rows
    new = x.new_zeros if packed else x.new_empty  # padding rows stay finite (zero)
    HS = new(T + 1, B, R)
    CS = new(T + 1, B, H) if cell else None
    M = new(T, B, H) if w_hr is not None else None  # projection: m_t = o ⊙ tanh(c_t)
    AUX = new(T, B, H) if (cell or gru) else None  # LSTM: tanh(c_t); GRU: W_hn h_{t-1} + b_hn
    XW = step.project(x, w_ih, b_ih, b_hh)  # (T, B, G·H), one GEMM for all steps
    A = XW if n > 1 else HS[wr]  # the gates, written over xw_t in place (RNN: h_t)
    HS[init] = h0
    if cell:
        CS[init] = c0
    w_rec = step.recurrent_weight(w_hh)

    # per-step views, cut to the active rows
    hs = HS.unbind(0)
    hp, hw = _cut(hs[rd], cut, B), _cut(hs[wr], cut, B)
    mw = _cut(M.unbind(0), cut, B) if M is not None else hw  # the cell's own output
    w_hr_t = w_hr.t() if w_hr is not None else None
    none = [None] * T
    cp, cw = none, none
    if cell:
        cs = CS.unbind(0)
        cp, cw = _cut(cs[rd], cut, B), _cut(cs[wr], cut, B)
    aux = _cut(AUX.unbind(0), cut, B) if AUX is not None else none
    a = _cut(XW.unbind(0), cut, B)
    gates = _steps(step.gates(A), cut, B, T)
    # gate statistics: step by step while the step is in cache, or, when the whole gate
    # buffer fits in cache anyway (dense input), in three passes after the loop
    step_stats = saturation is not None and (packed or A.numel() > _SMALL_BUFFER)
    if saturation is not None:
        stats = x.new_empty(T, 2, n)  # [sum, number saturated] of each gate, per step
        centre, limit = saturation
    if step_stats:
        st_u = _cut(A.unflatten(-1, (n, H)).unbind(0), cut, B)
        st_s = _cut([x.new_empty(B, n, H)] * T, cut, B)

    h_n = h0.new_empty(B, R)
    c_n = c0.new_empty(B, H) if cell else None
    fwd, args = step.forward, list(zip(a, gates, hp, cp, mw, cw, aux, strict=True))
    if not packed and not step_stats and M is None:  # every row runs every step: plain loop
        for t in order:
            fwd(*args[t], w_rec, b_hh)
    elif not packed and not step_stats:  # the same, with the projection h_t = W_hr m_t
        for t in order:
            fwd(*args[t], w_rec, b_hh)
            torch.mm(mw[t], w_hr_t, out=hw[t])
    if not packed and not step_stats:
        if T:
            h_n.copy_(hw[order[-1]])
            if cell:
                c_n.copy_(cw[order[-1]])
    prev_bs = 0
    for k, t in enumerate(order) if (packed or step_stats) else ():
        bs = sizes[t]
        if k and prev_bs < bs:  # rows that start here (reverse, packed): from h0, c0
            hp[t][prev_bs:] = h0[prev_bs:bs]
            if cell:
                cp[t][prev_bs:] = c0[prev_bs:bs]
        fwd(*args[t], w_rec, b_hh)
        if M is not None:
            torch.mm(mw[t], w_hr_t, out=hw[t])  # h_t = W_hr m_t
        if step_stats:
            step.finish_step(gates[t])  # the gates' final values (LSTM: g from σ(−2a_g))
            u, sat = st_u[t], st_s[t]
            torch.sum(u, (0, 2), out=stats[t, 0])  # Σ v over rows and units, each gate
            torch.sub(u, centre, out=sat).abs_().gt_(limit)  # |v − centre| > limit: 1 / 0
            torch.sum(sat, (0, 2), out=stats[t, 1])
        next_bs = sizes[order[k + 1]] if k + 1 < T else 0
        if next_bs < bs:  # rows whose sequence ends here hold their final state
            h_n[next_bs:bs] = hw[t][next_bs:]
            if cell:
                c_n[next_bs:bs] = cw[t][next_bs:]
        prev_bs = bs

    step.finish(A, AUX, gates_done=step_stats)  # LSTM: g and tanh(c_t), all steps at once
    if saturation is not None and not step_stats:
        torch.sum(A.sum(1).view(T, n, H), 2, out=stats[:, 0])  # Σ v over rows, then units
        cf, lf = (v.expand(n, H).reshape(n * H) for v in (centre, limit))  # per column
        tb = max(1, _STAT_BLOCK // (B * n * H))  # steps per block: a small reused scratch
        sat = A.new_empty(min(tb, T), B, n * H)
        for t0 in range(0, T, tb):
            s = sat[: min(tb, T - t0)]
            torch.sub(A[t0 : t0 + tb], cf, out=s).abs_().gt_(lf)  # |v − centre| > limit
            torch.sum(s.sum(1).view(-1, n, H), 2, out=stats[t0 : t0 + tb, 1])
    return A, HS, CS, AUX, M, h_n, c_n, (stats if saturation is not None else None)


def _backward(step, A, HS, CS, AUX, M, w_hh, w_hr, d_out, d_hn, d_cn, sizes, reverse):
    """The BPTT loop: returns (D_in, D_hid, DH, DC, dh0, dc0): ∂L/∂a_t on the input and the
    hidden side (one tensor but for the GRU), zero on padding rows; ∂L/∂h by slot (the total
    ∂L/∂h_t once its step ran; zero on padding rows with a projection); the LSTM's total
    ∂L/∂c_t; ∂L/∂h0 and ∂L/∂c0."""
    T, B = HS.shape[0] - 1, HS.shape[1]
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
    G = A.shape[2]
    H, R = G // step.n_chunks, w_hh.shape[1]
    cell, gru = step.has_cell, step.mode == "GRU"
    packed = any(s != B for s in sizes)
    cut = sizes if packed else None
    init = T if reverse else 0
    rd = slice(1, T + 1) if reverse else slice(0, T)
    wr = slice(0, T) if reverse else slice(1, T + 1)
    if d_hn is None:
        d_hn = HS.new_zeros(B, R)
    if cell and (d_cn is None or d_cn.numel() == 0):
        d_cn = HS.new_zeros(B, H)

    new = HS.new_zeros if packed else HS.new_empty
    DH = new(T + 1, B, R)  # ∂L/∂h by slot: local first, total once its step runs
    DH[init] = 0
    if d_out is not None:
        DH[wr] = d_out
    else:
        DH[wr] = 0
    # the cell's local derivatives (all steps at once, or step by step in its backward);
    # Q becomes ∂L/∂a (hidden side) in place
    MS = M if M is not None else HS[wr]  # the cell's own output (o ⊙ tanh(c_t) with W_hr)
    Q, P = step.local_derivatives(A, step.gates(A), HS[rd], MS,
                                  CS[rd] if cell else None, CS[wr] if cell else None, AUX)
    if cell:  # total ∂L/∂c_t (the LSTM may have filled it with a local derivative)
        DC = P if P is not None else new(T, B, H)
    else:
        DC = None
    dcarry = HS.new_zeros(B, H)  # ∂L/∂c_t arriving from step t+1: f_{t+1} ⊙ ∂L/∂c_{t+1}

    dhs = DH.unbind(0)
    dhp, dhw = _cut(dhs[rd], cut, B), _cut(dhs[wr], cut, B)
    q = _cut(Q.unbind(0), cut, B)
    dcr = _cut([dcarry] * T, cut, B)
    # per step: the views the cell's backward takes after (∂L/∂h_t, dcarry)
    args = _steps(step.backward_views(Q, A, P, HS[rd], MS, CS[rd] if cell else None,
                                      AUX, DC), cut, B, T)
    # with a projection, the cell's backward takes ∂L/∂m_t = ∂L/∂h_t W_hr (one GEMM a step)
    dm = _cut(new(T, B, H).unbind(0), cut, B) if M is not None else None
    z = _cut(step.gates(A)[1].unbind(0), cut, B) if gru else None
    back, add_rec = step.backward, adder(w_hh.t(), is_small(R))  # add_rec(y, x): y += x W_hh

    if not packed:  # every row runs every step: h_n, c_n are the last processed step's
        if T:
            dhw[order[-1]].add_(d_hn)
            if cell:
                dcarry.copy_(d_cn)
        if dm is None:
            for t in reversed(order):
                back(dhw[t], dcarry, *args[t])
                add_rec(dhp[t], q[t])  # ∂L/∂h_{t-1} += ∂L/∂a_t · W_hh
                if gru:
                    dhp[t].addcmul_(dhw[t], z[t])  # the z ⊙ h_{t-1} path
        for t in reversed(order) if dm is not None else ():  # the same through W_hr
            back(torch.mm(dhw[t], w_hr, out=dm[t]), dcarry, *args[t])
            add_rec(dhp[t], q[t])
        dh0 = DH[init].clone()
        dc0 = dcarry if cell else None
    else:
        dh0 = HS.new_zeros(B, R)
        dc0 = HS.new_zeros(B, H) if cell else None
    for k in range(T - 1, -1, -1) if packed else ():
        t = order[k]
        bs = sizes[t]
        next_bs = sizes[order[k + 1]] if k + 1 < T else 0
        prev_bs = sizes[order[k - 1]] if k else bs
        if next_bs < bs:  # rows whose last step is t: h_n (c_n) is their h_t (c_t)
            dhw[t][next_bs:] += d_hn[next_bs:bs]
            if cell:
                dcr[t][next_bs:] = d_cn[next_bs:bs]
        if prev_bs < bs:  # rows that start at t (reverse, packed): their slot collects dh0
            dhp[t][prev_bs:] = 0
        back(dhw[t] if dm is None else torch.mm(dhw[t], w_hr, out=dm[t]), dcr[t], *args[t])
        add_rec(dhp[t], q[t])  # ∂L/∂h_{t-1} += ∂L/∂a_t · W_hh
        if gru:
            dhp[t].addcmul_(dhw[t], z[t])  # the z ⊙ h_{t-1} path
        if prev_bs < bs:
            dh0[prev_bs:bs] = dhp[t][prev_bs:]
            if cell:
                dc0[prev_bs:bs] = dcr[t][prev_bs:]
    if T and packed:  # rows that start at the first processed step read the initial slot
        bs0 = sizes[order[0]]
        dh0[:bs0] = DH[init, :bs0]
        if cell:
            dc0[:bs0] = dcarry[:bs0]

    D_hid = Q  # ∂L/∂(W_hh h_{t-1} + b_hh), all steps
    if gru:  # input side: the n rows take ∂L/∂h_t ⊙ (1 − z)(1 − n²), without the r factor
        D_in = Q.clone()
        torch.mul(P, DH[wr], out=D_in[:, :, 2 * H :])
    else:
        D_in = Q
    if packed:  # padding rows carry no gradient (whatever the buffers held there)
        active = lengths_to_mask(torch.tensor(sizes, device=Q.device), B)  # (T, B): b < B_t
        pad = ~active.unsqueeze(2)  # (T, B, 1): the padding rows
        D_hid.masked_fill_(pad, 0)
        if D_in is not D_hid:
            D_in.masked_fill_(pad, 0)
        if M is not None:
            DH[wr].masked_fill_(pad, 0)

    return D_in, D_hid, DH, DC, dh0, dc0


def _empty_backward(ctx, saved) -> tuple:
    """A batch of 0 rows or a hidden size of 0: the outputs depend on no number of the inputs;
    every gradient is zeros of its input's shape (as torch's)."""
    if ctx.tap is not None:
        x, w_hh = saved[0], saved[4]
        T, B = x.shape[:2]
        H = w_hh.shape[0] // ctx.step.n_chunks
        ctx.tap.record_backward(x.new_zeros(T, B, w_hh.shape[1]),
                                x.new_zeros(T, B, H) if ctx.step.has_cell else None, ctx.sizes)
    grads = [torch.zeros_like(t) if (t is not None and need) else None
             for t, need in zip(saved, ctx.needs_input_grad, strict=False)]
    return (*grads, None, None, None, None)


def _batched(*grads) -> bool:
    """Some incoming gradient is vmap-batched (autograd.grad(is_grads_batched=True), which
    jacobian(vectorize=True) and gradcheck's batched check use; or torch.func.vmap)."""
    f = torch._C._functorch
    return any(g is not None and (f.is_legacy_batchedtensor(g) or f.is_batchedtensor(g))
               for g in grads)


def _replay(step, x: Tensor, h0: Tensor, c0: Tensor | None, weights: tuple, sizes, reverse):
    """The forward of ``Recurrence`` in plain autograd, one ``equations.step`` per time step:
    (output (T, B, R), h_n, c_n or None, [h_t], [c_t] or None), lists in time order, h_t and
    c_t as the step computes them (their gradients are the totals ∂L/∂h_t, ∂L/∂c_t of the
    active rows). Rows inactive at a step (packed input) keep their state, as the engine's do."""
    mode = "RNN" if step.mode.startswith("RNN") else step.mode
    nonlinearity = getattr(step, "nonlinearity", "tanh")
    T, B = x.shape[:2]
    rows = torch.arange(B, device=x.device).unsqueeze(1)  # (B, 1)
    h, c = h0, (c0 if step.has_cell else None)
    outs, hs, cs = [None] * T, [None] * T, [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        h_new, c_new, _ = equations.step(mode, x[t], h, c, weights, nonlinearity)
        hs[t], cs[t] = h_new, c_new
        if sizes[t] < B:  # packed: rows beyond the step's batch size keep their state
            active = rows < sizes[t]
            h_new = torch.where(active, h_new, h)
            c_new = torch.where(active, c_new, c) if c is not None else None
        outs[t], h, c = h_new, h_new, c_new
    return torch.stack(outs), h, c, hs, (cs if step.has_cell else None)


def _replay_backward(ctx, saved, d_out, d_hn, d_cn) -> tuple:
    """Double backward: the gradients as differentiable functions of the saved inputs and of
    the incoming gradients, by replaying the forward with ``equations`` under autograd (also
    the path for vmap-batched incoming gradients, with create_graph as the caller asked)."""
    create_graph = torch.is_grad_enabled()
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = saved
    step, sizes, tap = ctx.step, ctx.sizes, ctx.tap
    inputs = list(saved)
    wanted = [i for i, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[i]]
    weights = (w_ih, w_hh, b_ih, b_hh) + ((w_hr,) if w_hr is not None else ())
    with torch.enable_grad():
        out, h_n, c_n, hs, cs = _replay(step, x, h0, c0, weights, sizes, ctx.reverse)
        outs, d_outs = [out, h_n], [d_out, d_hn]
        if step.has_cell:
            outs.append(c_n)
            d_outs.append(d_cn)
        record = tap is not None and not _batched(d_out, d_hn, d_cn)
        states = (hs + (cs or [])) if record else []  # their grads: the totals ∂L/∂h_t, ∂L/∂c_t
        got = torch.autograd.grad(outs, [inputs[i] for i in wanted] + states, d_outs,
                                  create_graph=create_graph, allow_unused=True)
    if record:
        T = x.shape[0]
        total = [g.detach() if g is not None else torch.zeros_like(v)
                 for g, v in zip(got[len(wanted):], states, strict=True)]
        tap.record_backward(torch.stack(total[:T]),
                            torch.stack(total[T:]) if step.has_cell else None, sizes)
    grads = [None] * len(inputs)
    for i, g in zip(wanted, got, strict=False):
        grads[i] = g
    return (*grads, None, None, None, None)


def run(step, x: Tensor, h0: Tensor, c0: Tensor | None, w_ih, w_hh, b_ih, b_hh,
        batch_sizes: tuple[int, ...] | None = None, reverse: bool = False, tap=None, *,
        w_hr: Tensor | None = None):
    """Run one direction of one layer over time-major ``x`` (T, B, I); ``w_hr`` (P, H): the
    LSTM's projection (torch's proj_size), h_t = W_hr (o ⊙ tanh(c_t)).

    Returns (output (T, B, R), h_n (B, R), c_n (B, H) or None), R = H, or P with W_hr.
    """
    if c0 is None:
        c0 = h0.new_zeros(0)
    out, h_n, c_n = Recurrence.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, step,
                                     batch_sizes, reverse, tap)
    return out, h_n, (c_n if step.has_cell else None)
