"""The fast path of the equations: each cell's forward step and its hand-derived backward step.

These steps compute exactly the equations of ``rnnlab.equations`` (the plain-autograd reference,
written as the course notes write them; read that file for the math) and are tested against it
and against torch.nn. What is here is tuned code: in place, into preallocated buffers, with the
algebra rearranged to save operations; every such line says in a comment which formula it is.

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

LSTM with a projection (proj_size): the cell's own output is m_t = o ⊙ tanh(c_t), which the
engine projects to the state h_t = W_hr m_t; what the LSTM step calls h_t (its output slot ``h``
and the buffer ``HS`` of ``local_derivatives`` / ``backward_views``) is then m_t, and the ∂L/∂h_t
its ``backward`` receives is ∂L/∂m_t. The recurrent input h_{t-1} is the projected state.

Speed notes (CPU): every torch op costs a few µs at these sizes, so the per-step work is a few
in-place ops. torch's CPU tanh is several times slower than its σ (about 10× per value), so
the LSTM computes both its tanh as tanh(v) = 1 − 2σ(−2v): with the g rows of the weights scaled
by −2 (exact in floating point) one σ covers all four gates, and the step keeps σ(−2c_t).

GRU convention: like torch, h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}, so z is the *keep* gate.
Many textbooks (Cho et al. 2014 as often quoted, d2l's "update gate" in some editions) write
h_t = z ⊙ n + (1 − z) ⊙ h_{t-1}: their z is torch's 1 − z. Everything in rnnlab follows torch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .gemm import adder, is_small, linear, linear_add


def _sum_bias(b_ih, b_hh):
    """b_ih + b_hh (either may be None: bias=False)."""
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return b_ih + b_hh


def _project(x: Tensor, w: Tensor, b) -> Tensor:
    """x (T, B, I) -> x W^T + b (T, B, G): one GEMM over all time steps."""
    T, B, _ = x.shape
    return linear(x.reshape(T * B, x.shape[2]), w, b).view(T, B, w.shape[0])


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

    def forward(self, a, g, h_prev, c_prev, h, c, aux, w_hh, b_hh):
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
        return (HS > 0).to(HS.dtype), None  # relu'(a) = [a > 0] = [h_t > 0]

    def finish_step(self, g):
        pass

    def finish(self, A, AUX, gates_done: bool = False):
        pass

    def backward_views(self, Q, A, P, HP, HS, CP, AUX, DC):
        """The (T, B, ...) buffers whose per-step views ``backward`` takes after dh, dcarry."""
        return (Q,)

    def backward(self, dh, dcarry, q):
        q.mul_(dh)  # ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t)


class LSTMStep:
    """LSTM, torch's gate order (i, f, g, o):

    i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)

    Both tanh go through σ (tanh(v) = 1 − 2σ(−2v)): the g rows of the weights are scaled by −2
    (exact), so one σ over the four gate blocks leaves r_g = σ(−2a_g) in the g rows, and the
    step keeps r_c = σ(−2c_t) in the auxiliary slot; ``finish`` turns both into g and tanh(c_t)
    for all steps at once after the loop.

    Backward, two forms with the same equations: for a small problem (the local-derivative
    buffer, T·B·4H values, at most ``SMALL_LOCALS``) ``local_derivatives`` forms everything
    that does not depend on ∂L/∂h_t, ∂L/∂c_t for all steps in a few vectorized ops and a step
    is 4 ops + the GEMM (op count is what costs there); for a large one each step forms its
    own local derivatives while its data is in cache (memory traffic is what costs there).
    """

    gate_names = ("i", "f", "g", "o")
    n_chunks = 4
    has_cell = True
    mode = "LSTM"
    SMALL_LOCALS = 2**21  # T·B·4H values: up to this, local derivatives are formed for all steps

    @staticmethod
    def _scale_g(t: Tensor) -> Tensor:
        """A copy of t (4H, ...) with its g rows times −2 (exact): σ(−2a_g) = (1 − tanh a_g)/2."""
        t = t.clone()
        H = t.shape[0] // 4
        t[2 * H : 3 * H] *= -2  # g rows: −2·W_g (−2·b_g), so their pre-activation is −2a_g
        return t

    def project(self, x, w_ih, b_ih, b_hh):
        # xw_t = W_ih x_t + b_ih + b_hh for all t, g rows times −2: (T, B, I) -> (T, B, 4H)
        b = _sum_bias(b_ih, b_hh)
        return _project(x, self._scale_g(w_ih), None if b is None else self._scale_g(b))

    def recurrent_weight(self, w_hh):
        """add_rec(y, x): y += x W_hhᵀ, with the g rows of W_hh times −2."""
        return adder(self._scale_g(w_hh), is_small(w_hh.shape[1]))

    def gates(self, A):
        return A.unflatten(-1, (4, -1)).unbind(-2)  # i, f, g, o views (T, B, H)

    def forward(self, a, g, h_prev, c_prev, h, c, rc, add_rec, b_hh):
        """Leaves r_g = σ(−2a_g) in the g rows and r_c = σ(−2c_t) in ``rc`` (see ``finish``);
        add_rec is ``recurrent_weight``'s."""
        i, f, rg, o = g  # views of a's four gate blocks (rg: the g rows)
        add_rec(a, h_prev)  # a = xw_t + W_hh h_{t-1} (g rows: ×−2)
        a.sigmoid_()  # i, f, o = σ(a_i), σ(a_f), σ(a_o);  r_g = σ(−2a_g) in the g rows
        torch.addcmul(i, i, rg, value=-2, out=c)  # c = i − 2 i⊙r_g = i ⊙ tanh(a_g) = i ⊙ g
        c.addcmul_(f, c_prev)  # c_t = f ⊙ c_{t-1} + i ⊙ g
        torch.add(c, c, alpha=-3, out=rc)  # rc = c_t − 3c_t = −2c_t
        rc.sigmoid_()  # r_c = σ(−2c_t)
        torch.addcmul(o, o, rc, value=-2, out=h)  # h_t = o − 2 o⊙r_c = o ⊙ tanh(c_t)

    def finish_step(self, g):
        """The g rows of one step: r_g -> g = 1 − 2r_g = tanh(a_g)."""
        g[2].mul_(-2).add_(1)  # g = 1 − 2σ(−2a_g) = tanh(a_g)

    def finish(self, A, AUX, gates_done: bool = False):
        """After the loop, all steps: g = 1 − 2r_g in the g rows (unless ``finish_step`` did
        it already), tanh(c_t) = 1 − 2r_c in AUX."""
        if not gates_done:
            self.gates(A)[2].mul_(-2).add_(1)  # g = 1 − 2r_g = tanh(a_g), every step
        AUX.mul_(-2).add_(1)  # tanh(c_t) = 1 − 2σ(−2c_t), every step

    def local_derivatives(self, A, g, HP, HS, CP, CS, AUX):
        """Small problem: returns (Q, W) with, for all steps, Q = [g σ'(a_i), c_{t-1} σ'(a_f),
        i tanh'(a_g), tanh(c_t) σ'(a_o)] (the step multiplies its slot by ∂L/∂c_t, ∂L/∂h_t in
        place) and W = o tanh'(c_t) (the step turns its slot into ∂L/∂c_t in place).
        Large problem: (an empty Q, None); ``backward`` forms them step by step."""
        T, B, G = A.shape
        if T * B * G > self.SMALL_LOCALS:
            return torch.empty_like(A), None  # ∂L/∂a's buffer; ``backward`` fills it
        i, f, gg, o = g  # the gates of every step (T, B, H)
        Q = torch.addcmul(A, A, A, value=-1)  # σ'(a) = s(1 − s) (the g rows are redone below)
        qi, qf, qg, qo = self.gates(Q)
        qi.mul_(gg)  # g ⊙ σ'(a_i)
        qf.mul_(CP)  # c_{t-1} ⊙ σ'(a_f)
        torch.mul(i, gg, out=qg)  # i ⊙ g, then:
        torch.addcmul(i, qg, gg, value=-1, out=qg)  # i ⊙ tanh'(a_g) = i − i ⊙ g²
        qo.mul_(AUX)  # tanh(c_t) ⊙ σ'(a_o)
        W = torch.addcmul(o, HS, AUX, value=-1)  # o ⊙ tanh'(c_t) = o − h_t ⊙ tanh(c_t)
        return Q, W

    def backward_views(self, Q, A, P, HP, HS, CP, AUX, DC):
        """The (T, B, ...) buffers whose per-step views ``backward`` takes after dh, dcarry."""
        T, B, G = Q.shape
        H = G // 4
        Qv = Q.view(T, B, 4, H)  # Q by gate: [..., k, :] is gate k's block
        f = A.view(T, B, 4, H)[:, :, 1]  # f_t of every step
        if P is not None:  # local derivatives in Q, DC: q (i,f,g), q o, ∂L/∂c_t, as (B,1,H), f
            return Qv[:, :, :3], Qv[:, :, 3], DC, DC.unsqueeze(2), f
        w = Q.new_empty(B, H).expand(T, B, H)  # one scratch buffer for every step
        return (Q, Qv[:, :, :3], *Qv.unbind(2), A, *A.view(T, B, 4, H).unbind(2), DC, CP,
                HS, AUX, w)

    def backward(self, dh, dcarry, *v):
        """dh: total ∂L/∂h_t; dcarry: ∂L/∂c_t arriving from step t+1 (f_{t+1} ⊙ ∂L/∂c_{t+1});
        writes the total ∂L/∂c_t into dc, f_t ⊙ ∂L/∂c_t into dcarry, ∂L/∂a_t into q.
        v: this step's views of ``backward_views``."""
        if len(v) == 5:  # local derivatives precomputed (``local_derivatives``): 4 ops
            q3, qo, dc, dcu, f = v
            torch.addcmul(dcarry, dh, dc, out=dc)  # ∂L/∂c_t = from c_{t+1} + ∂L/∂h_t ⊙ o tanh'(c_t)
            q3.mul_(dcu)  # ∂L/∂a_{i,f,g} = ∂L/∂c_t ⊙ (g σ', c_{t-1} σ', i tanh')
            qo.mul_(dh)  # ∂L/∂a_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ σ'(a_o)
            torch.mul(dc, f, out=dcarry)  # ∂c_t/∂c_{t-1} = f_t: the cell-state highway
            return
        q, q3, qi, qf, qg, qo, a, i, f, gg, o, dc, c_prev, h, tc, w = v
        torch.addcmul(o, h, tc, value=-1, out=w)  # o ⊙ (1 − tanh²(c_t)) = o − h_t ⊙ tanh(c_t)
        torch.addcmul(dcarry, dh, w, out=dc)  # ∂L/∂c_t = from c_{t+1} + ∂L/∂h_t ⊙ o ⊙ tanh'(c_t)
        torch.addcmul(a, a, a, value=-1, out=q)  # σ'(a) = s(1 − s) (the g rows are redone next)
        torch.mul(i, gg, out=qg)  # i ⊙ g, then:
        torch.addcmul(i, qg, gg, value=-1, out=qg)  # i ⊙ tanh'(a_g) = i − i ⊙ g²
        qi.mul_(gg)  # g ⊙ σ'(a_i)
        qf.mul_(c_prev)  # c_{t-1} ⊙ σ'(a_f)
        q3.mul_(dc.unsqueeze(1))  # ∂L/∂a_{i,f,g} = ∂L/∂c_t ⊙ (g σ', c_{t-1} σ', i tanh')
        qo.mul_(tc).mul_(dh)  # ∂L/∂a_o = ∂L/∂h_t ⊙ tanh(c_t) ⊙ σ'(a_o)
        torch.mul(dc, f, out=dcarry)  # ∂c_t/∂c_{t-1} = f_t: the cell-state highway


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

    def forward(self, a, g, h_prev, c_prev, h, c, hn, w_hh, b_hh):
        """On return a = [r, z, n], hn = W_hn h_{t-1} + b_hn (saved for backward)."""
        r, z, n, rz = g
        H = h.shape[1]
        hw = linear(h_prev, w_hh, b_hh, is_small(H))  # W_hh h_{t-1} + b_hh
        rz.add_(hw[:, : 2 * H]).sigmoid_()  # r, z = σ(xw + W_h h + b_h)
        hn.copy_(hw[:, 2 * H :])  # hn = W_hn h_{t-1} + b_hn
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

    def finish_step(self, g):
        pass

    def finish(self, A, AUX, gates_done: bool = False):
        pass

    def backward_views(self, Q, A, P, HP, HS, CP, AUX, DC):
        """The (T, B, ...) buffers whose per-step views ``backward`` takes after dh, dcarry."""
        return (Q.unflatten(-1, (3, -1)),)

    def backward(self, dh, dcarry, q3):
        q3.mul_(dh.unsqueeze(1))  # ∂L/∂(W_hh h + b_hh) = ∂L/∂h_t ⊙ Q


def make_step(mode: str, nonlinearity: str = "tanh"):
    """The step equations for ``mode`` in {"RNN", "LSTM", "GRU"}."""
    if mode == "RNN":
        return RNNStep(nonlinearity)
    if mode == "LSTM":
        return LSTMStep()
    if mode == "GRU":
        return GRUStep()
    raise ValueError(f"Unknown recurrent mode '{mode}'. Select from 'RNN', 'LSTM' or 'GRU'.")
