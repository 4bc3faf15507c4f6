"""The equations: each cell's forward step and its hand-derived backward step.

Notation (DESIGN.md), batch rows first inside a step: x_t (B, I), h_t (B, H), c_t (B, H).
A cell's pre-activations are split into the input part, computed for all steps at once by
the engine with one GEMM,

    xw_t = W_ih x_t + b_ih            (+ b_hh too where the cell adds it unchanged)

and the recurrent part W_hh h_{t-1} (+ b_hh), computed here, one GEMM per step.

Every ``forward`` writes its activations *in place* into ``a`` (the step's slot of the engine's
time-major buffer, holding xw_t on entry), so the buffer the engine saves for the backward pass
holds the gates themselves. Every ``backward`` receives the total gradient reaching h_t and
returns the pre-activation gradients; the engine turns them into ∂L/∂h_{t-1} (one GEMM) and
into the weight gradients (one GEMM over all steps).

Gate order is torch's: LSTM (i, f, g, o), GRU (r, z, n).

GRU convention: like torch, h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}, so z is the *keep* gate.
Many textbooks (Cho et al. 2014 as often quoted, d2l's "update gate" in some editions) write
h_t = z ⊙ n + (1 − z) ⊙ h_{t-1}: their z is torch's 1 − z. Everything in rnnlab follows torch.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RNNStep:
    """Elman RNN: h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), φ = tanh or relu."""

    gate_names: tuple[str, ...] = ()
    n_chunks = 1
    has_cell = False

    def __init__(self, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"

    def input_projection(self, x: Tensor, w_ih: Tensor, b_ih, b_hh) -> Tensor:
        # xw_t = W_ih x_t + b_ih + b_hh, for all t: (T, B, I) -> (T, B, H)
        return _project(x, w_ih, _sum_bias(b_ih, b_hh))

    def forward(self, a: Tensor, h: Tensor, c, w_hh: Tensor, b_hh) -> tuple[Tensor, None]:
        a.addmm_(h, w_hh.t())  # a = xw_t + W_hh h_{t-1}
        h_new = a.tanh_() if self.nonlinearity == "tanh" else a.relu_()  # h_t = φ(a)
        return h_new, None

    def backward(self, dh: Tensor, dc, a: Tensor, h_prev, c_prev, c):
        # ∂L/∂a = ∂L/∂h_t ⊙ φ'(a):  tanh' = 1 − h_t²,  relu' = [h_t > 0]
        if self.nonlinearity == "tanh":
            da = dh * (1 - a * a)
        else:
            da = dh * (a > 0)
        return da, da, None, None, None


class LSTMStep:
    """LSTM, torch's gate order (i, f, g, o):

    i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)
    """

    gate_names = ("i", "f", "g", "o")
    n_chunks = 4
    has_cell = True
    mode = "LSTM"

    def input_projection(self, x, w_ih, b_ih, b_hh):
        # xw_t = W_ih x_t + b_ih + b_hh, for all t: (T, B, I) -> (T, B, 4H)
        return _project(x, w_ih, _sum_bias(b_ih, b_hh))

    def forward(self, a, h, c, w_hh, b_hh):
        H = h.shape[1]
        a.addmm_(h, w_hh.t())  # a = xw_t + W_hh h_{t-1}
        a[:, : 2 * H].sigmoid_()  # i, f = σ(a_i), σ(a_f)
        a[:, 2 * H : 3 * H].tanh_()  # g = tanh(a_g)
        a[:, 3 * H :].sigmoid_()  # o = σ(a_o)
        i, f, g, o = a.chunk(4, 1)
        c_new = torch.addcmul(i * g, f, c)  # c_t = f ⊙ c_{t-1} + i ⊙ g
        h_new = o * torch.tanh(c_new)  # h_t = o ⊙ tanh(c_t)
        return h_new, c_new

    def backward(self, dh, dc, a, h_prev, c_prev, c):
        """dh: total ∂L/∂h_t; dc: ∂L/∂c_t arriving from step t+1 (via c_{t+1} = f ⊙ c_t + ...)."""
        i, f, g, o = a.chunk(4, 1)
        tc = torch.tanh(c)
        dc = dc + dh * o * (1 - tc * tc)  # total ∂L/∂c_t = from c_{t+1} + ∂L/∂h_t ⊙ o ⊙ tanh'(c_t)
        da = torch.cat(
            (
                dc * g * i * (1 - i),  # ∂L/∂a_i = ∂L/∂c_t ⊙ g ⊙ σ'
                dc * c_prev * f * (1 - f),  # ∂L/∂a_f = ∂L/∂c_t ⊙ c_{t-1} ⊙ σ'
                dc * i * (1 - g * g),  # ∂L/∂a_g = ∂L/∂c_t ⊙ i ⊙ tanh'
                dh * tc * o * (1 - o),  # ∂L/∂a_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ σ'
            ),
            1,
        )
        dc_prev = dc * f  # ∂c_t/∂c_{t-1} = f_t: the cell-state highway
        return da, da, None, dc, dc_prev


class GRUStep:
    """GRU, torch's convention and gate order (r, z, n):

    r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
    """

    gate_names = ("r", "z", "n")
    n_chunks = 3
    has_cell = False
    mode = "GRU"

    def input_projection(self, x, w_ih, b_ih, b_hh):
        # xw_t = W_ih x_t + b_ih (b_hh stays inside: b_hn is multiplied by r)
        return _project(x, w_ih, b_ih)

    def forward(self, a, h, c, w_hh, b_hh):
        """On return a = [r, z, n]; also returns hn = W_hn h_{t-1} + b_hn, saved for backward."""
        H = h.shape[1]
        hw = h @ w_hh.t() if b_hh is None else torch.addmm(b_hh, h, w_hh.t())  # W_hh h + b_hh
        a[:, : 2 * H].add_(hw[:, : 2 * H]).sigmoid_()  # r, z = σ(xw + W_h h + b_h)
        r, z, n = a.chunk(3, 1)
        hn = hw[:, 2 * H :]
        n.addcmul_(r, hn).tanh_()  # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h_new = torch.addcmul(n, z, h - n)  # h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
        return h_new, hn

    def backward(self, dh, dc, a, h_prev, aux_prev, hn):
        """``hn`` is the step's saved W_hn h_{t-1} + b_hn (the GRU's auxiliary buffer)."""
        r, z, n = a.chunk(3, 1)
        dn = dh * (1 - z) * (1 - n * n)  # ∂L/∂(pre-tanh of n)
        dz = dh * (h_prev - n) * z * (1 - z)  # ∂L/∂a_z
        dr = dn * hn * r * (1 - r)  # ∂L/∂a_r
        d_in = torch.cat((dr, dz, dn), 1)  # input side:  ∂L/∂(W_ih x + b_ih)
        d_hid = torch.cat((dr, dz, dn * r), 1)  # hidden side: ∂L/∂(W_hh h + b_hh)
        dh_direct = dh * z  # the z ⊙ h_{t-1} path
        return d_in, d_hid, dh_direct, None, None


def make_step(mode: str, nonlinearity: str = "tanh"):
    """The step equations for ``mode`` in {"RNN", "LSTM", "GRU"}."""
    if mode == "RNN":
        return RNNStep(nonlinearity)
    if mode == "LSTM":
        return LSTMStep()
    if mode == "GRU":
        return GRUStep()
    raise ValueError(f"Unknown recurrent mode '{mode}'. Select from 'RNN', 'LSTM' or 'GRU'.")


def _sum_bias(b_ih, b_hh):
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return b_ih + b_hh


def _project(x: Tensor, w: Tensor, b) -> Tensor:
    """x (T, B, I) -> (T, B, G): one GEMM over all time steps."""
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)
    out = x2 @ w.t() if b is None else torch.addmm(b, x2, w.t())
    return out.view(T, B, w.shape[0])  # G explicit: T·B may be 0 (an empty batch)
