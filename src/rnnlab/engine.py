"""Runs a cell over time: a forward loop, then an explicit BPTT backward loop.

One ``torch.autograd.Function`` per layer and direction. Shapes are time-major inside:
x (T, B, I), outputs (T, B, H). Variable lengths come as ``batch_sizes`` (a PackedSequence's,
rows sorted by decreasing length): at step t only the first batch_sizes[t] rows are active.

Forward:  XW = W_ih x + b for all steps (one GEMM), then per step a = XW_t + W_hh h_{t-1}
          (one GEMM) and the cell's pointwise equations, written in place into XW.
Backward: from the last processed step to the first,
          ∂L/∂h_t = ∂L/∂h_t|local (from the loss and the layer above) + ∂L/∂h_{t+1} ∂h_{t+1}/∂h_t
          with ∂L/∂h_{t-1} = ∂L/∂a_t · W_hh (one GEMM per step) and, for the LSTM,
          ∂L/∂c_{t-1} = ∂L/∂c_t ⊙ f_t. The weight gradients are single GEMMs over all steps:
          ∂L/∂W_ih = Σ_t ∂L/∂a_tᵀ x_t,  ∂L/∂W_hh = Σ_t ∂L/∂a_tᵀ h_{t-1}.

Telemetry: when a ``Tap`` is passed, the backward loop records the batch mean of ‖∂L/∂h_t‖₂ (and
‖∂L/∂c_t‖₂) at every step, and the forward records gate statistics; see ``rnnlab.telemetry``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _rows(carry: Tensor | None, n_carry: int, fresh: Tensor, bs: int) -> Tensor:
    """State rows for a step over ``bs`` rows: the first ``n_carry`` continue from ``carry``,
    the rest start from ``fresh`` (a row's initial state, or its final-state gradient)."""
    if n_carry >= bs and carry is not None:  # (carry is None only for an empty batch)
        return carry[:bs]
    if n_carry == 0:
        return fresh[:bs]
    return torch.cat((carry[:n_carry], fresh[n_carry:bs]))


class Recurrence(torch.autograd.Function):
    """One layer, one direction: (x, h0, c0, weights) -> (output, h_n, c_n)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, step, batch_sizes, reverse, tap):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        sizes = batch_sizes if batch_sizes is not None else (B,) * T
        order = range(T - 1, -1, -1) if reverse else range(T)

        A = step.input_projection(x, w_ih, b_ih, b_hh)  # (T, B, G·H): xw_t for all t, then gates
        HS = x.new_zeros(T, B, H)  # h_t for all t
        AUX = x.new_zeros(T, B, H) if (step.has_cell or step.mode == "GRU") else None  # c_t / hn_t
        h_n, c_n = h0.clone(), (c0.clone() if step.has_cell else None)

        prev_t, prev_bs = None, 0
        for k, t in enumerate(order):
            bs = sizes[t]
            h_prev = _rows(HS[prev_t] if prev_t is not None else None, prev_bs, h0, bs)
            c_prev = _rows(AUX[prev_t] if prev_t is not None else None, prev_bs, c0, bs) \
                if step.has_cell else None
            h, aux = step.forward(A[t, :bs], h_prev, c_prev, w_hh, b_hh)
            HS[t, :bs] = h
            if aux is not None:
                AUX[t, :bs] = aux
            # rows whose sequence ends here (no next step) hold their final state
            next_bs = sizes[order[k + 1]] if k + 1 < T else 0
            if next_bs < bs:
                h_n[next_bs:bs] = h[next_bs:]
                if c_n is not None:
                    c_n[next_bs:bs] = aux[next_bs:]
            prev_t, prev_bs = t, bs

        if tap is not None:
            tap.record_gates(step, A, sizes)
        ctx.step, ctx.sizes, ctx.order, ctx.tap = step, sizes, list(order), tap
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, A, HS, AUX)
        return HS, h_n, (c_n if c_n is not None else h_n.new_zeros(0))

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, A, HS, AUX = ctx.saved_tensors
        step, sizes, order, tap = ctx.step, ctx.sizes, ctx.order, ctx.tap
        T, B, _ = x.shape
        H = w_hh.shape[1]
        cell = step.has_cell
        if d_out is None:
            d_out = HS.new_zeros(HS.shape)
        if d_hn is None:
            d_hn = h0.new_zeros(h0.shape)
        if cell and (d_cn is None or d_cn.numel() == 0):
            d_cn = h0.new_zeros(h0.shape)

        D_in = A.new_zeros(A.shape)  # ∂L/∂(input-side pre-activations), all steps
        D_hid = D_in if step.mode != "GRU" else A.new_zeros(A.shape)  # ∂L/∂(W_hh h + b_hh)
        H_prev = HS.new_zeros(HS.shape)  # h_{t-1} of every step, for ∂L/∂W_hh
        dh0 = h0.new_zeros(h0.shape)
        dc0 = h0.new_zeros(h0.shape) if cell else None
        gh = HS.new_zeros(T) if tap is not None else None
        gc = HS.new_zeros(T) if (tap is not None and cell) else None

        dh_carry = dc_carry = None
        for k in range(T - 1, -1, -1):
            t = order[k]
            bs = sizes[t]
            next_bs = sizes[order[k + 1]] if k + 1 < T else 0
            prev_t = order[k - 1] if k > 0 else None
            prev_bs = sizes[prev_t] if prev_t is not None else 0

            # total ∂L/∂h_t: local (loss at t, layer above) + from step t+1 (or from h_n)
            dh = d_out[t, :bs] + _rows(dh_carry, next_bs, d_hn, bs)
            dc = _rows(dc_carry, next_bs, d_cn, bs) if cell else None
            h_prev = _rows(HS[prev_t] if prev_t is not None else None, prev_bs, h0, bs)
            aux_prev = _rows(AUX[prev_t] if prev_t is not None else None, prev_bs, c0, bs) \
                if cell else None
            aux = AUX[t, :bs] if AUX is not None else None

            d_in, d_hid, dh_direct, dc_total, dc_prev = step.backward(
                dh, dc, A[t, :bs], h_prev, aux_prev, aux)
            D_in[t, :bs] = d_in
            if D_hid is not D_in:
                D_hid[t, :bs] = d_hid
            H_prev[t, :bs] = h_prev
            if gh is not None:
                gh[t] = torch.linalg.vector_norm(dh, dim=1).mean()
                if gc is not None:
                    gc[t] = torch.linalg.vector_norm(dc_total, dim=1).mean()

            dh_prev = d_hid @ w_hh  # ∂L/∂h_{t-1} = ∂L/∂a_t · W_hh
            if dh_direct is not None:
                dh_prev = dh_prev + dh_direct
            # rows that started at this step pass their gradient to the initial state
            if prev_bs < bs:
                dh0[prev_bs:bs] = dh_prev[prev_bs:]
                if cell:
                    dc0[prev_bs:bs] = dc_prev[prev_bs:]
            dh_carry, dc_carry = dh_prev, dc_prev

        if tap is not None:
            tap.record_grads(gh, gc)

        G = A.shape[2]
        need = ctx.needs_input_grad
        dx = (D_in.view(T * B, G) @ w_ih).view(x.shape) if need[0] else None
        dw_ih = D_in.view(T * B, G).t() @ x.reshape(T * B, x.shape[2]) if need[3] else None
        dw_hh = D_hid.view(T * B, G).t() @ H_prev.view(T * B, H) if need[4] else None
        db_ih = D_in.sum((0, 1)) if (b_ih is not None and need[5]) else None
        db_hh = D_hid.sum((0, 1)) if (b_hh is not None and need[6]) else None
        return (dx, dh0 if need[1] else None, dc0 if (cell and need[2]) else None,
                dw_ih, dw_hh, db_ih, db_hh, None, None, None, None)


def run(step, x: Tensor, h0: Tensor, c0: Tensor | None, w_ih, w_hh, b_ih, b_hh,
        batch_sizes: tuple[int, ...] | None = None, reverse: bool = False, tap=None):
    """Run one direction of one layer over time-major ``x`` (T, B, I).

    Returns (output (T, B, H), h_n (B, H), c_n (B, H) or None). Rows beyond a step's batch size
    (padding of a packed batch) are zero in the output.
    """
    if c0 is None:
        c0 = h0.new_zeros(0)
    out, h_n, c_n = Recurrence.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, step,
                                     batch_sizes, reverse, tap)
    return out, h_n, (c_n if step.has_cell else None)
