"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), torch.nn-style layers.

The GRU and LSTM with every h_{t−1} removed from their gates, so that the recurrence is linear
in h and trains by a parallel scan:

    minGRU:   z_t = σ(W_z x_t + b_z)                      update gate, from x_t only
              h̃_t = g(W_h x_t + b_h)                      candidate state, positive
              h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t
    minLSTM:  i_t = σ(W_i x_t + b_i),  f_t = σ(W_f x_t + b_f),  h̃_t = g(W_h x_t + b_h)
              f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)     normalised: f' + i' = 1
              h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t

    g(v) = v + ½ for v ≥ 0, σ(v) for v < 0   (positive and continuous, linear for large v)

So ∂h_t/∂h_{t−1} = diag(1 − z_t) (minGRU), diag(f'_t) (minLSTM): the gradient through time is a
product of gates that depend on the input alone — the LSTM's additive cell path, without the
W_hh that made the classic recurrence vanish or explode.

The parallel scan runs in log space (Heinsen 2023, as in the paper): every coefficient is
positive, so with k = W x + b,

    minGRU:   log a_t = log(1 − z_t) = −softplus(k_z),   log b_t = −softplus(−k_z) + log g(k_h)
    minLSTM:  δ = softplus(−k_f) − softplus(−k_i) = log i − log f,
              log a_t = log f'_t = −softplus(δ),          log b_t = −softplus(−δ) + log g(k_h)
    log g(v) = log(v + ½) for v ≥ 0, −softplus(−v) for v < 0

``log_space=False`` runs the same recurrence through the plain linear scan (a_t, b_t themselves;
see ``rnnlab.scan``), which is also stable and faster on a CPU; the numbers agree to rounding.
``scan="sequential"`` runs the step equations above one step at a time (same numbers).
The initial state h_0 is the state itself (the paper's code feeds log g(h_0), i.e. takes h_0 as
a pre-activation; rnnlab does not), so any real h_0 works.

Parameters, torch's naming: ``weight_ih_l{k}[_reverse]`` (n·H, I) and ``bias_ih_l{k}`` (n·H,),
rows in blocks [z | h̃] (minGRU) and [i | f | h̃] (minLSTM, torch's LSTM order), initialised like
torch.nn.Linear, U(−1/√I, 1/√I). There is no weight_hh: nothing multiplies h_{t−1} but a gate.

Mapping to torch.nn.GRU: torch's z is a *keep* gate (h = (1 − z) ⊙ n + z ⊙ h_{t−1}); minGRU's
z, as in the paper, is the *update* gate (the share of the new candidate).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .scanrnn import ScanRNNBase

_LOG2 = math.log(2.0)


def softplus(v: Tensor) -> Tensor:
    """log(1 + eᵛ) to rounding for every v (F.softplus returns v itself above 20, an error of
    e⁻²⁰ ≈ 2·10⁻⁹ that float64 would see)."""
    return torch.logaddexp(v, v.new_zeros(()))


def g(v: Tensor) -> Tensor:
    """The paper's positive activation: v + ½ for v ≥ 0, σ(v) below; as relu(v) + σ(min(v, 0)),
    one formula for both sides (torch.where, and clamp's backward, are several times slower on
    a CPU than relu)."""
    return F.relu(v) + torch.sigmoid(-F.relu(-v))  # min(v, 0) = −relu(−v)


def log_g(v: Tensor) -> Tensor:
    """log g(v) without forming g: log(v + ½) for v ≥ 0, log σ(v) = −softplus(−v) below; as
    log(relu(v) + ½) − softplus(−min(v, 0)) + log 2, which is each of them on its side."""
    return torch.log(F.relu(v) + 0.5) - softplus(F.relu(-v)) + _LOG2


class _MinRNN(ScanRNNBase):
    """Shared by MinGRU and MinLSTM: one input projection per layer and direction."""

    n_chunks = 0

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 scan: str = "parallel", log_space: bool = True):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, scan=scan, log_space=log_space)
        self.reset_parameters()

    def _parameter_shapes(self, layer_in: int) -> dict[str, tuple[int, ...]]:
        G = self.n_chunks * self.hidden_size
        shapes = {"weight_ih": (G, layer_in)}
        if self.bias:
            shapes["bias_ih"] = (G,)
        return shapes

    def reset_parameters(self) -> None:
        for layer in range(self.num_layers):
            k = 1.0 / math.sqrt(self.layer_input_size(layer))  # torch.nn.Linear's bound
            for d in range(self.num_directions):
                for name in self._names:
                    nn.init.uniform_(self._get(name, layer, d), -k, k)

    def weights(self, layer: int, direction: int = 0) -> tuple[Tensor, Tensor | None]:
        """(W_ih, b_ih) of one layer and direction (b_ih None when bias=False)."""
        return self._get("weight_ih", layer, direction), self._get("bias_ih", layer, direction)

    def _project(self, layer: int, d: int, x: Tensor) -> Tensor:
        return F.linear(x, *self.weights(layer, d))  # k = W_ih x + b_ih, every gate at once

    def _readout(self, layer: int, d: int, h: Tensor, x: Tensor) -> Tensor:
        return h  # the output is the state

    def _options(self) -> dict:
        return {**super()._options(), "log_space": (self.log_space, True)}


class MinGRU(_MinRNN):
    """minGRU: h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ g(W_h x_t + b_h), z_t = σ(W_z x_t + b_z).

    torch.nn.GRU's arguments (``dropout`` between layers), plus ``scan="parallel"|"sequential"``
    and ``log_space`` (see the module docstring). Returns
    (output (T, B, D·H), h_n (L·D, B, H)); ``step(x_t, h)`` streams one token.
    """

    mode = "MinGRU"
    n_chunks = 2

    def _coefficients(self, layer, d, p, gates):
        k_z, k_h = p.chunk(2, -1)
        if self.log_space:
            a = -softplus(k_z)                                # log(1 − z) = −softplus(k_z)
            b = -softplus(-k_z) + log_g(k_h)                  # log z + log g(k_h)
        else:
            a = torch.sigmoid(-k_z)                             # 1 − z = σ(−k_z)
            b = torch.sigmoid(k_z) * g(k_h)                     # z ⊙ h̃
        return a, b, ({"z": torch.sigmoid(k_z)} if gates else {})

    def _recur(self, layer, d, p_t, h):
        k_z, k_h = p_t.chunk(2, -1)
        z = torch.sigmoid(k_z)                                  # z_t = σ(W_z x_t + b_z)
        return (1 - z) * h + z * g(k_h)                         # h_t = (1−z) h_{t−1} + z h̃_t


class MinLSTM(_MinRNN):
    """minLSTM: h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ g(W_h x_t + b_h), f' = f/(f+i), i' = i/(f+i),
    f_t, i_t = σ(W_f x_t + b_f), σ(W_i x_t + b_i). No cell state: h_n only.

    torch.nn.LSTM's arguments (no proj_size), plus ``scan`` and ``log_space``. Returns
    (output (T, B, D·H), h_n (L·D, B, H)); ``step(x_t, h)`` streams one token.
    """

    mode = "MinLSTM"
    n_chunks = 3

    def _coefficients(self, layer, d, p, gates):
        k_i, k_f, k_h = p.chunk(3, -1)
        diff = softplus(-k_f) - softplus(-k_i)              # log i − log f
        if self.log_space:
            a = -softplus(diff)                               # log f' = −log(1 + i/f)
            b = -softplus(-diff) + log_g(k_h)                 # log i' + log g(k_h)
        else:
            a = torch.sigmoid(-diff)                            # f' = f/(f+i) = σ(log f − log i)
            b = torch.sigmoid(diff) * g(k_h)                    # i' ⊙ h̃
        stats = {"i": torch.sigmoid(diff), "f": torch.sigmoid(-diff)} if gates else {}
        return a, b, stats

    def _recur(self, layer, d, p_t, h):
        k_i, k_f, k_h = p_t.chunk(3, -1)
        i, f = torch.sigmoid(k_i), torch.sigmoid(k_f)          # i_t, f_t from x_t only
        f_n, i_n = f / (f + i), i / (f + i)                     # f' = f/(f+i), i' = i/(f+i)
        return f_n * h + i_n * g(k_h)                           # h_t = f' h_{t−1} + i' h̃_t
