"""The equations: each cell's forward step and its hand-derived backward step.

Notation (DESIGN.md), batch rows first inside a step: x_t (B, I), h_t (B, H), c_t (B, H).
A cell's pre-activations are split into the input part, computed for all steps at once by
the engine with one GEMM,

    xw_t = W_ih x_t + b_ih            (+ b_hh too where the cell adds it unchanged)

and the recurrent part W_hh h_{t-1} (+ b_hh), computed here, one GEMM per step.

Every ``forward`` writes into the engine's preallocated time-major buffers, in place: the gate
slot ``a`` (holding xw_t on entry) ends up holding the gates themselves, h_t and c_t go straight
into their slots. Nothing in the loop builds an autograd graph.

Every ``backward`` receives the total ∂L/∂h_t (and the LSTM's ∂L/∂c_t arriving from step t+1)
and writes the pre-activation gradients ∂L/∂a_t, in place, into its slot of the buffer the
engine hands it; the engine turns them into ∂L/∂h_{t-1} (one GEMM per step) and into the weight
gradients (one GEMM over all steps). The local derivatives (σ' = s(1−s), tanh' = 1 − g², ...)
are formed by ``local_derivatives`` for all steps at once where that is a single cheap pass (RNN,
GRU), and inside the LSTM's ``backward`` step by step, while the step's data is in cache.

Gate order is torch's: LSTM (i, f, g, o), GRU (r, z, n).

Speed notes (CPU): every torch op costs a few µs at these sizes, so the per-step work is a few
in-place ops. torch's CPU tanh is several times slower than its σ, so the LSTM computes its
tanh gate as tanh(a) = 2σ(2a) − 1 with the g rows of the weights doubled (exact in floating
point): one σ covers all four gates.

GRU convention: like torch, h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}, so z is the *keep* gate.
Many textbooks (Cho et al. 2014 as often quoted, d2l's "update gate" in some editions) write
h_t = z ⊙ n + (1 − z) ⊙ h_{t-1}: their z is torch's 1 − z. Everything in rnnlab follows torch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .gemm import add_linear_, is_small, linear, linear_add


def _sum_bias(b_ih, b_hh):
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return b_ih + b_hh


def _project(x: Tensor, w: Tensor, b) -> Tensor:
    """x (T, B, I) -> x W^T + b (T, B, G): one GEMM over all time steps."""
    T, B, _ = x.shape
    return linear(x.reshape(T * B, x.shape[2]), w, b).view(T, B, w.shape[0])


def _tanh_from_sigmoid_(v: Tensor) -> Tensor:
    """In place: v holds s = σ(2a) on entry, tanh(a) = 2s − 1 on return."""
    return v.mul_(2).sub_(1)


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

    def project(self, x, w_ih, b_ih, b_hh):
        # xw_t = W_ih x_t + b_ih + b_hh, for all t: (T, B, I) -> (T, B, H)
        return _project(x, w_ih, _sum_bias(b_ih, b_hh))

    def recurrent_weight(self, w_hh):
        return w_hh

    def gates(self, A):
        return ()

    def forward(self, a, g, h_prev, c_prev, h, c, aux, w_hh, b_hh, scratch):
        """a: xw_t; h: the h_t slot, which receives a = xw_t + W_hh h_{t-1}, then φ(a)."""
        linear_add(h, a, h_prev, w_hh, is_small(h.shape[1]))  # a = xw_t + W_hh h_{t-1}
        if self.nonlinearity == "tanh":
            h.tanh_()  # h_t = tanh(a)
        else:
            h.relu_()  # h_t = relu(a)

    def local_derivatives(self, A, g, HP, HS, CP, CS, AUX):
        """φ'(a_t) for all t: tanh' = 1 − h_t², relu' = [h_t > 0]. Returns (Q, None)."""
        if self.nonlinearity == "tanh":
            return torch.addcmul(torch.ones_like(HS), HS, HS, value=-1), None  # 1 − h²
        return (HS > 0).to(HS.dtype), None

    def grad_views(self, Q):
        return ()

    def backward(self, q, qv, a, g, dh, dc, dcarry, c_prev, h, aux, w):
        q.mul_(dh)  # ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t)
        return q


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

    @staticmethod
    def _double_g(t: Tensor) -> Tensor:
        """A copy of t (4H, ...) with its g rows doubled (exact): σ(2a_g) gives tanh(a_g)."""
        t = t.clone()
        H = t.shape[0] // 4
        t[2 * H : 3 * H] *= 2
        return t

    def project(self, x, w_ih, b_ih, b_hh):
        # xw_t = W_ih x_t + b_ih + b_hh for all t, g rows doubled: (T, B, I) -> (T, B, 4H)
        b = _sum_bias(b_ih, b_hh)
        return _project(x, self._double_g(w_ih), None if b is None else self._double_g(b))

    def recurrent_weight(self, w_hh):
        return self._double_g(w_hh)  # W_hh with doubled g rows

    def gates(self, A):
        return A.unflatten(-1, (4, -1)).unbind(-2)  # i, f, g, o views (T, B, H)

    def forward(self, a, g, h_prev, c_prev, h, c, tc, w_hh, b_hh, scratch):
        """Also keeps tanh(c_t) in ``tc`` for the backward."""
        i, f, gg, o = g
        add_linear_(a, h_prev, w_hh, is_small(h.shape[1]))  # a = xw_t + W_hh h_{t-1} (g doubled)
        a.sigmoid_()  # i, f, o = σ(a_i), σ(a_f), σ(a_o);  σ(2 a_g) in the g rows
        _tanh_from_sigmoid_(gg)  # g = 2σ(2a_g) − 1 = tanh(a_g)
        torch.mul(i, gg, out=c)
        c.addcmul_(f, c_prev)  # c_t = f ⊙ c_{t-1} + i ⊙ g
        torch.tanh(c, out=tc)
        torch.mul(o, tc, out=h)  # h_t = o ⊙ tanh(c_t)

    def local_derivatives(self, A, g, HP, HS, CP, CS, AUX):
        """Nothing in advance: the LSTM's local derivatives are formed step by step in
        ``backward``, while the step's data is in cache. Returns the (empty) ∂L/∂a buffer."""
        return torch.empty_like(A), None

    def grad_views(self, Q):
        Qv = Q.unflatten(-1, (4, -1))
        return (*Qv.unbind(-2), Qv[:, :, :3])  # ∂L/∂a_i, _f, _g, _o and the (i, f, g) rows

    def backward(self, q, qv, a, g, dh, dc, dcarry, c_prev, h, tc, w):
        """dh: total ∂L/∂h_t; dcarry: ∂L/∂c_t arriving from step t+1 (f_{t+1} ⊙ ∂L/∂c_{t+1});
        writes the total ∂L/∂c_t into dc, f_t ⊙ ∂L/∂c_t into dcarry, ∂L/∂a_t into q."""
        i, f, gg, o = g
        qi, qf, qg, qo, q3 = qv
        torch.addcmul(o, h, tc, value=-1, out=w)  # o ⊙ (1 − tanh²(c_t)) = o − h_t ⊙ tanh(c_t)
        torch.addcmul(dcarry, dh, w, out=dc)  # ∂L/∂c_t = from c_{t+1} + ∂L/∂h_t ⊙ o ⊙ tanh'(c_t)
        torch.addcmul(a, a, a, value=-1, out=q)  # σ'(a) = s(1 − s) (the g rows are redone next)
        torch.mul(i, gg, out=qg)
        torch.addcmul(i, qg, gg, value=-1, out=qg)  # i ⊙ tanh'(a_g) = i − i ⊙ g²
        qi.mul_(gg)  # g ⊙ σ'(a_i)
        qf.mul_(c_prev)  # c_{t-1} ⊙ σ'(a_f)
        q3.mul_(dc.unsqueeze(1))  # ∂L/∂a_{i,f,g} = ∂L/∂c_t ⊙ (g σ', c_{t-1} σ', i tanh')
        qo.mul_(tc).mul_(dh)  # ∂L/∂a_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ σ'(a_o)
        torch.mul(dc, f, out=dcarry)  # ∂c_t/∂c_{t-1} = f_t: the cell-state highway
        return q


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

    def project(self, x, w_ih, b_ih, b_hh):
        # xw_t = W_ih x_t + b_ih (b_hh stays inside: b_hn is multiplied by r)
        return _project(x, w_ih, b_ih)

    def recurrent_weight(self, w_hh):
        return w_hh

    def gates(self, A):
        H = A.shape[-1] // 3
        return (*A.unflatten(-1, (3, H)).unbind(-2), A[..., : 2 * H])  # r, z, n, [r z]

    def forward(self, a, g, h_prev, c_prev, h, c, hn, w_hh, b_hh, scratch):
        """On return a = [r, z, n], hn = W_hn h_{t-1} + b_hn (saved for backward)."""
        r, z, n, rz = g
        H = h.shape[1]
        scratch = linear(h_prev, w_hh, b_hh)  # W_hh h_{t-1} + b_hh
        rz.add_(scratch[:, : 2 * H]).sigmoid_()  # r, z = σ(xw + W_h h + b_h)
        hn.copy_(scratch[:, 2 * H :])
        n.addcmul_(r, hn).tanh_()  # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        torch.lerp(n, h_prev, z, out=h)  # h_t = n + z ⊙ (h_{t-1} − n) = (1 − z) ⊙ n + z ⊙ h_{t-1}

    def local_derivatives(self, A, g, HP, HS, CP, CS, AUX):
        """Q (hidden side) = [N⊙hn⊙σ'(a_r), (h_{t-1} − n)⊙σ'(a_z), N⊙r] and N = (1−z)⊙(1−n²),
        for all t: per step ∂L/∂(W_hh h + b_hh) = dh ⊙ Q; the input side is the same with N
        in place of N⊙r (∂L/∂(W_in x + b_in) = dh ⊙ N), formed after the loop."""
        r, z, n, _ = g
        N = (1 - z) * (1 - n * n)  # ∂h_t/∂(pre-tanh n) = (1 − z)(1 − n²)
        Q = torch.addcmul(A, A, A, value=-1)  # σ' = s(1 − s) for r, z (n rows set below)
        qr, qz, qn, _ = self.gates(Q)
        qr.mul_(AUX).mul_(N)  # (1−z)(1−n²) ⊙ hn ⊙ σ'(a_r)
        qz.mul_(HP - n)  # (h_{t-1} − n) ⊙ σ'(a_z)
        torch.mul(N, r, out=qn)  # (1−z)(1−n²) ⊙ r
        return Q, N

    def grad_views(self, Q):
        return (Q.unflatten(-1, (3, -1)),)

    def backward(self, q, qv, a, g, dh, dc, dcarry, c_prev, h, aux, w):
        qv[0].mul_(dh.unsqueeze(1))  # ∂L/∂(W_hh h + b_hh) = ∂L/∂h_t ⊙ Q
        return q


def make_step(mode: str, nonlinearity: str = "tanh"):
    """The step equations for ``mode`` in {"RNN", "LSTM", "GRU"}."""
    if mode == "RNN":
        return RNNStep(nonlinearity)
    if mode == "LSTM":
        return LSTMStep()
    if mode == "GRU":
        return GRUStep()
    raise ValueError(f"Unknown recurrent mode '{mode}'. Select from 'RNN', 'LSTM' or 'GRU'.")
