"""RNNCell / LSTMCell / GRUCell: one step of a cell, drop-in compatible with torch.nn's cells.

Same constructor arguments, parameter names and shapes (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``), inputs (batched (B, I) or one vector (I,), an optional state), return values and
argument errors as ``torch.nn.RNNCell/LSTMCell/GRUCell``. A cell is the engine (``rnnlab.engine``)
run for one step (T = 1), so it has the engine's hand-written backward and, with
``create_graph=True``, its differentiable replay (double backward). As torch's, a cell may have a
hidden (or input) size of 0: its state is then an empty (B, 0) tensor.

Extra keyword arguments: ``forget_bias`` (LSTMCell), ``recurrent_init``, ``spectral_radius``, as
for the layers (``rnnlab.layers``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import engine
from .cells import make_step
from .layers import _N_CHUNKS, _check_int, _InitMixin


class RNNCellBase(_InitMixin, nn.Module):
    """One step of a cell, torch.nn.RNNCell/LSTMCell/GRUCell's API, on the same engine (T = 1)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None, *, nonlinearity: str = "tanh",
                 forget_bias: float | None = None, recurrent_init: str = "default",
                 spectral_radius: float | None = None):
        super().__init__()
        _check_int("input_size", input_size, minimum=0)  # torch builds cells of size 0
        _check_int("hidden_size", hidden_size, minimum=0)
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.bias = bias
        self.nonlinearity = nonlinearity
        self.step = make_step(mode, nonlinearity)
        self._check_init_options(forget_bias, recurrent_init, spectral_radius, bias)
        G = _N_CHUNKS[mode] * hidden_size
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(G, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def _weight_groups(self):
        yield self.weight_hh, self.bias_ih, self.bias_hh

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s

    def forward(self, input: Tensor, hx=None):
        name = type(self).__name__
        lstm = self.mode == "LSTM"
        # torch's checks, in its order, with its exception types and words
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            if lstm:
                if not isinstance(hx, tuple | list):
                    raise TypeError(f"LSTMCell expects hx as a tuple (h, c), "
                                    f"got {type(hx).__name__}")
                if len(hx) != 2:  # torch: RuntimeError "lstm_cell expects two hidden states"
                    raise RuntimeError(f"LSTMCell expects two hidden states (h, c), got {len(hx)}")
            for i, s in enumerate(hx if lstm else (hx,)):
                if s.dim() not in (1, 2):
                    what = f"hx[{i}]" if lstm else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {s.dim()}D "
                                     "instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        if x.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {x.size(1)} "
                               f"expected {self.input_size}")
        if hx is None:
            states = [x.new_zeros(B, H)] * (2 if lstm else 1)
        else:
            states = [s if batched else s.unsqueeze(0) for s in (hx if lstm else (hx,))]
        for i, s in enumerate(states):
            if s.size(0) != B:
                raise RuntimeError(f"Input batch size {B} doesn't match hidden{i} batch size "
                                   f"{s.size(0)}")
            if s.dim() != 2 or s.size(1) != H:
                raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got "
                                   f"{s.size(1) if s.dim() > 1 else list(s.shape)}, expected {H}")
            if s.dtype != x.dtype:
                raise RuntimeError(f"{name} hidden{i} dtype ({s.dtype}) does not match input "
                                   f"dtype ({x.dtype})")
        w = self.weight_ih
        if x.dtype != w.dtype:  # torch fails in its first GEMM (RuntimeError), after the above
            raise RuntimeError(f"{name} input dtype ({x.dtype}) does not match weight dtype "
                               f"({w.dtype})")
        _, h, c = engine.run(self.step, x.unsqueeze(0), states[0], states[1] if lstm else None,
                             self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if not batched:
            h = h.squeeze(0)
            c = c.squeeze(0) if c is not None else None
        return (h, c) if lstm else h


class RNNCell(RNNCellBase):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu); torch.nn.RNNCell's API."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None, **init):
        super().__init__("RNN", input_size, hidden_size, bias, device, dtype,
                         nonlinearity=nonlinearity, **init)


class LSTMCell(RNNCellBase):
    """(h', c') from (x, (h, c)); torch.nn.LSTMCell's API, plus ``forget_bias=``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None, **init):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype, **init)


class GRUCell(RNNCellBase):
    """h' = (1−z)⊙n + z⊙h; torch.nn.GRUCell's API."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None, **init):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype, **init)
