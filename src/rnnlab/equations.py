"""The equations: the RNN, LSTM and GRU steps in plain autograd, and one ``unroll``.

This is the reference, written to be read next to the course notes. Each step is one line per
equation, plain torch operations, so autograd can take any derivative of it: probes, studies and
tests run these steps (``retain_grad`` on any h_t, Jacobians, truncated or blocked paths).
The fast path, ``rnnlab.cells`` + ``rnnlab.engine`` (tuned in-place steps, a hand-derived
backward), computes the same equations; tests check one against the other, and these against
``torch.nn``'s cells with copied weights.

Notation (DESIGN.md), batch rows first inside a step: x_t (B, I), h_t, c_t (B, H); torch's
weights and gate orders: W_ih (G·H, I), W_hh (G·H, H), b_ih, b_hh (G·H,) with the gate blocks
stacked in torch's order, LSTM (i, f, g, o), GRU (r, z, n).

    RNN:  h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),  φ = tanh (or relu)
    LSTM: i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
          c_t = f ⊙ c_{t-1} + i ⊙ g
          h_t = o ⊙ tanh(c_t)         (with proj_size P > 0: h_t = W_hr (o ⊙ tanh(c_t)), size P)
    GRU:  r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
          z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
          n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))
          h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

The notes write the LSTM with one weight on the concatenation [h_{t-1}, x_t]: W_f [h_{t-1}, x_t]
+ b_f is W_hf h_{t-1} + W_if x_t + (b_if + b_hf) here (torch keeps two biases; only their sum
counts), and g is the notes' candidate c̃_t.

GRU, the mapping to the notes and textbooks. torch's (and rnnlab's) z is a *keep* gate:
h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}. The notes (as Cho et al. 2014 are often quoted) write
h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t with an *update* gate z_t: their z_t is torch's 1 − z, their
h̃_t torch's n. Their candidate also applies the reset gate before the matrix,
h̃_t = tanh(W [r_t ⊙ h_{t-1}, x_t]), where torch (and cuDNN) apply it after:
r ⊙ (W_hn h_{t-1} + b_hn). The two are different functions of the same weights; rnnlab follows
torch.

Time steps are numbered t = 0..T−1 and h_t is the state after step t (the notes' 1-based h_T is
h_{T−1} here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

GATES = {"RNN": (), "LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}  # torch's orders


def _lin(v: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """W v + b for a batch of rows v (B, K), w (M, K) -> (B, M)."""
    y = v @ w.T
    return y if b is None else y + b


# ---- one step of each cell ----------------------------------------------------------------
def rnn_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """Elman RNN: one step, x_t (B, I), h_{t-1} (B, H) -> h_t (B, H)."""
    a = _lin(x, w_ih, b_ih) + _lin(h, w_hh, b_hh)  # a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    if nonlinearity == "tanh":
        return torch.tanh(a)  # h_t = tanh(a_t)
    if nonlinearity == "relu":
        return torch.relu(a)  # h_t = relu(a_t)
    raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")


def lstm_step(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None = None, b_hh: Tensor | None = None, w_hr: Tensor | None = None
              ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """LSTM: one step, (x_t, h_{t-1}, c_{t-1}) -> (h_t, c_t, {"i", "f", "g", "o"}).

    With a projection W_hr (P, H) (torch's proj_size = P): h_t = W_hr (o ⊙ tanh(c_t)), of size P,
    and h_{t-1} (B, P) enters through W_hh (4H, P)."""
    a = _lin(x, w_ih, b_ih) + _lin(h, w_hh, b_hh)  # a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    a_i, a_f, a_g, a_o = a.chunk(4, -1)  # torch's gate order i, f, g, o
    i = torch.sigmoid(a_i)  # i_t = σ(a_i)      input gate
    f = torch.sigmoid(a_f)  # f_t = σ(a_f)      forget gate
    g = torch.tanh(a_g)  # g_t = tanh(a_g)      candidate (the notes' c̃_t)
    o = torch.sigmoid(a_o)  # o_t = σ(a_o)      output gate
    c = f * c + i * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
    h = o * torch.tanh(c)  # h_t = o ⊙ tanh(c_t)
    if w_hr is not None:
        h = h @ w_hr.T  # h_t = W_hr (o ⊙ tanh(c_t))   projection (proj_size)
    return h, c, {"i": i, "f": f, "g": g, "o": o}


def gru_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """GRU (torch's convention): one step, (x_t, h_{t-1}) -> (h_t, {"r", "z", "n"})."""
    x_r, x_z, x_n = _lin(x, w_ih, b_ih).chunk(3, -1)  # W_i· x_t + b_i·, gates r, z, n
    h_r, h_z, h_n = _lin(h, w_hh, b_hh).chunk(3, -1)  # W_h· h_{t-1} + b_h·
    r = torch.sigmoid(x_r + h_r)  # r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)   reset gate
    z = torch.sigmoid(x_z + h_z)  # z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)   keep gate
    n = torch.tanh(x_n + r * h_n)  # n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))
    h = (1 - z) * n + z * h  # h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
    return h, {"r": r, "z": z, "n": n}


def step(mode: str, x: Tensor, h: Tensor, c: Tensor | None, weights, nonlinearity: str = "tanh"
         ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """One step of ``mode`` ("RNN", "LSTM", "GRU") with weights (W_ih, W_hh, b_ih, b_hh), for an
    LSTM with a projection (W_ih, W_hh, b_ih, b_hh, W_hr): (h_t, c_t or None, gates). The RNN has
    no gates ({})."""
    if mode == "LSTM":
        return lstm_step(x, h, c, *weights)
    if mode == "GRU":
        h, gates = gru_step(x, h, *weights)
        return h, None, gates
    if mode == "RNN":
        return rnn_step(x, h, *weights, nonlinearity=nonlinearity), None, {}
    raise ValueError(f"Unknown recurrent mode '{mode}'. Select from 'RNN', 'LSTM' or 'GRU'.")


# ---- unrolling a layer over time ----------------------------------------------------------
@dataclass
class Steps:
    """One layer and direction, unrolled. Lists hold one (B, H) autograd tensor per step, in
    processing order: step s is input time t = s for direction 0 and t = T−1−s for the
    reverse direction (direction 1).

    h: h_t after each step; c: the LSTM's c_t (None otherwise); gates: name -> per-step
    post-activation gates (LSTM i, f, g, o; GRU r, z, n; the RNN has none: {}); h0, c0: the
    initial state; active: per step, the (B,) bool rows whose sequence includes that step (None
    when every row is active; packed input); an inactive row keeps its state, and its gates
    at that step are computed but belong to no sequence.
    """

    layer: int
    direction: int
    h: list[Tensor]
    c: list[Tensor] | None
    gates: dict[str, list[Tensor]]
    h0: Tensor
    c0: Tensor | None
    active: list[Tensor] | None = None

    @property
    def h_prev(self) -> list[Tensor]:
        """h_{t-1} entering each step (h0 for the first)."""
        return [self.h0, *self.h[:-1]]

    @property
    def c_prev(self) -> list[Tensor] | None:
        """c_{t-1} entering each step (c0 for the first); None but for the LSTM."""
        return None if self.c is None else [self.c0, *self.c[:-1]]


@dataclass
class Unrolled:
    """What ``unroll`` returns: ``output``, ``h_n``, ``c_n`` as the layer returns them (its layout,
    a PackedSequence for packed input; c_n None but for the LSTM) and ``steps``, one ``Steps``
    per layer and direction, k = layer·num_directions + direction (the order of h_n)."""

    output: Tensor | PackedSequence
    h_n: Tensor
    c_n: Tensor | None
    steps: list[Steps]


def _describe(layer, weights):
    """(mode, nonlinearity, L, D, batch_first, [(W_ih, W_hh, b_ih, b_hh) per k])."""
    if isinstance(layer, str):  # a one-layer, one-direction, time-major layer from its weights
        if weights is None:
            raise ValueError("unroll(mode, x) needs weights=(W_ih, W_hh, b_ih, b_hh)")
        mode, L, D, batch_first = layer, 1, 1, False
        nonlinearity = "relu" if mode == "RNN_RELU" else "tanh"
    else:
        mode = layer.mode  # rnnlab: RNN, LSTM, GRU; torch.nn: RNN_TANH, RNN_RELU, LSTM, GRU
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        if getattr(layer, "proj_size", 0):
            names += ("weight_hr",)  # h_t = W_hr (o ⊙ tanh(c_t))
        nonlinearity = getattr(layer, "nonlinearity", "tanh")
        L, D = layer.num_layers, 2 if layer.bidirectional else 1
        batch_first = layer.batch_first
        if weights is None:
            get = lambda name, k: getattr(layer, f"{name}_l{k // D}" + ("_reverse" if k % D else
                                                                         ""), None)
            weights = [tuple(get(n, k) for n in names) for k in range(L * D)]
    if mode.startswith("RNN"):
        mode = "RNN"
    if mode not in GATES:
        raise ValueError(f"Unknown recurrent mode '{mode}'. Select from 'RNN', 'LSTM' or 'GRU'.")
    if isinstance(weights[0], Tensor):  # one direction's (W_ih, W_hh, b_ih, b_hh)
        weights = [weights]
    weights = [tuple(w) + (None,) * (4 - len(w)) for w in weights]  # torch's bias=False: 2
    if len(weights) != L * D:
        raise ValueError(f"expected weights for {L * D} layer·direction(s), got {len(weights)}")
    return mode, nonlinearity, L, D, batch_first, weights


def unroll(layer, x: Tensor | PackedSequence, hx=None, *, weights=None, window: int | None = None,
           block: str | None = None, retain_grad: bool = False) -> Unrolled:
    """Run a recurrent layer step by step with the equations above, in autograd.

    layer: an RNN / LSTM / GRU module, rnnlab's or torch.nn's (its mode, nonlinearity,
        num_layers, bidirectional, batch_first and parameters are read; no dropout), or a mode
        string ("RNN", "RNN_TANH", "RNN_RELU", "LSTM", "GRU") with ``weights``: then a
        one-layer, one-direction layer with torch's default layout (time-major).
    x, hx: exactly what the layer takes: x (T, B, I), or (B, T, I) with batch_first, or one
        sequence (T, I), or a PackedSequence; hx = h_0 (L·D, B, H) or, for the LSTM, (h_0, c_0)
        ((L·D, H) for one sequence); zeros when None.
    weights: (W_ih, W_hh, b_ih, b_hh) for a mode string, (W_ih, W_hh, b_ih, b_hh, W_hr) for an
        LSTM with a projection (biases None when absent); for a module, optionally a list of
        them, one per layer·direction k, used instead of its parameters (e.g. detached float64
        copies). An LSTM module's proj_size is read: h_t = W_hr (o ⊙ tanh(c_t)).
    window k: truncated BPTT, the state entering step s is detached for s < T − k, so the
        gradient flows back k state-to-state steps (step s counted in processing order).
    block: "h": the state h_{t-1} entering each step is detached (for the LSTM: only the cell
        path c_{t-1} → c_t carries gradient through time); "c": LSTM only, c_{t-1} is detached in
        c_t = f ⊙ c_{t-1} + i ⊙ g (only the h path remains).
    retain_grad: call ``retain_grad()`` on every h_t and c_t, so that after a backward pass
        ``steps[k].h[s].grad`` is the total ∂L/∂h_t.

    Outputs: ``Unrolled`` (output, h_n, c_n in the layer's layout, as the layer returns them,
    and ``steps``: per layer and direction, h_t, c_t and the gates of every step).
    """
    mode, nonlinearity, L, D, batch_first, weights = _describe(layer, weights)
    if block not in (None, "h", "c") or (block == "c" and mode != "LSTM"):
        raise ValueError(f"block must be None, 'h' or (LSTM) 'c', got {block!r} for {mode}")
    packed = x if isinstance(x, PackedSequence) else None
    lengths = None
    if packed is not None:  # padded, time-major, the batch in its original order (as hx is)
        x, lengths = pad_packed_sequence(packed)
        lengths = lengths.to(x.device)
    batched = packed is not None or x.dim() == 3
    if not batched:
        x = x.unsqueeze(1)  # one sequence (T, I) -> (T, 1, I)
    tdim = 1 if (batch_first and batched and packed is None) else 0  # the time axis of x
    B = x.shape[1 - tdim]
    R = weights[0][1].shape[1]  # the size of h (proj_size with a projection)
    H = weights[0][1].shape[0] // max(1, len(GATES[mode]))  # the size of c (hidden_size)
    h0, c0 = (hx if mode == "LSTM" else (hx, None)) if hx is not None else (None, None)
    h0 = x.new_zeros(L * D, B, R) if h0 is None else (h0 if batched else h0.unsqueeze(1))
    if mode == "LSTM":
        c0 = x.new_zeros(L * D, B, H) if c0 is None else (c0 if batched else c0.unsqueeze(1))

    steps, h_n, c_n = [], [], []
    inp = x
    for l in range(L):
        outs = []
        for d in range(D):
            k = l * D + d
            rec = Steps(l, d, [], [] if mode == "LSTM" else None, {g: [] for g in GATES[mode]},
                        h0[k], None if c0 is None else c0[k], None if lengths is None else [])
            _run(rec, mode, nonlinearity, weights[k], inp, tdim, lengths, window, block,
                 retain_grad)
            steps.append(rec)
            h_n.append(rec.h[-1])
            c_n.append(rec.c[-1] if rec.c else None)
            hs = rec.h[::-1] if d else rec.h  # input time order
            if lengths is not None:  # padding positions of the output are zero
                hs = [torch.where(a[:, None], v, 0) for v, a in
                      zip(hs, rec.active[::-1] if d else rec.active, strict=True)]
            outs.append(torch.stack(hs, tdim))
        inp = outs[0] if D == 1 else torch.cat(outs, 2)  # the next layer's input: [h→, h←]

    h_n = torch.stack(h_n)
    c_n = torch.stack(c_n) if mode == "LSTM" else None
    output = inp
    if packed is not None:
        output = _repack(output, packed)
    elif not batched:
        output, h_n = output.squeeze(1), h_n.squeeze(1)
        c_n = None if c_n is None else c_n.squeeze(1)
    return Unrolled(output, h_n, c_n, steps)


def _run(rec: Steps, mode, nonlinearity, weights, x: Tensor, tdim: int, lengths, window, block,
         retain_grad) -> None:
    """One layer and direction: the steps over x (time axis ``tdim``), appended to ``rec``."""
    T = x.shape[tdim]
    h, c = rec.h0, rec.c0
    order = range(T - 1, -1, -1) if rec.direction else range(T)
    for s, t in enumerate(order):
        if window is not None and s < T - window:  # older than the window: no gradient
            h, c = h.detach(), (None if c is None else c.detach())
        h_in = h.detach() if block == "h" else h  # block "h": h_{t-1} enters without gradient
        c_in = c.detach() if block == "c" else c  # block "c": c_t = f ⊙ [c_{t-1}] + i ⊙ g
        h_new, c_new, gates = step(mode, x.select(tdim, t), h_in, c_in, weights, nonlinearity)
        if lengths is not None:  # packed: a row whose sequence does not reach t keeps its state
            act = lengths > t
            rec.active.append(act)
            h_new = torch.where(act[:, None], h_new, h)
            c_new = None if c is None else torch.where(act[:, None], c_new, c)
        h, c = h_new, c_new
        if retain_grad:
            for v in (h, c):
                if v is not None and v.requires_grad:
                    v.retain_grad()
        rec.h.append(h)
        if c is not None:
            rec.c.append(c)
        for name, v in gates.items():
            rec.gates[name].append(v)


def _repack(out: Tensor, like: PackedSequence) -> PackedSequence:
    """Padded time-major (T, B, ·), batch in original order -> a PackedSequence laid out as
    ``like`` (its batch_sizes and sorting), as the layer returns it."""
    if like.sorted_indices is not None:
        out = out.index_select(1, like.sorted_indices)
    data = torch.cat([out[t, :bs] for t, bs in enumerate(like.batch_sizes.tolist())])
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
