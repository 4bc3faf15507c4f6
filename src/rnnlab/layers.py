"""RNN / LSTM / GRU modules (and their single-step cells), drop-in compatible with torch.nn.

Same constructor arguments, parameter names and shapes (``weight_ih_l0``, ``bias_hh_l1_reverse``,
...), gate orders, inputs (Tensor, PackedSequence, unbatched 2-D) and return values as
``torch.nn.RNN/LSTM/GRU``, so ``load_state_dict`` works both ways. The recurrence runs on
rnnlab's explicit BPTT engine (``rnnlab.engine``).

Extra keyword arguments torch lacks:

- ``forget_bias`` (LSTM): the effective forget-gate bias b_ih + b_hh is set to this value
  (b_ih_f = value, b_hh_f = 0), e.g. 1.0 as in Jozefowicz et al. (2015);
- ``recurrent_init="orthogonal"``: each gate block of W_hh is r·Q, Q a random orthogonal matrix;
- ``spectral_radius=r``: r for the orthogonal init (default 1); with the default init, each gate
  block of W_hh is rescaled to spectral radius r;
- ``backend``: "engine" always runs rnnlab's explicit BPTT engine; "fused" runs torch's fused
  kernels on the very same Parameters; "auto" (default) uses the fused kernels unless the module
  is being traced (``rnnlab.trace``) or torch has no kernel for the configuration.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import Tensor, nn

from . import engine
from .cells import make_step
from .stack import layer_weights, run_layer

_N_CHUNKS = {"RNN": 1, "LSTM": 4, "GRU": 3}
_BACKENDS = ("auto", "engine", "fused")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")


class _InitMixin:
    """Initialisation shared by layers and cells: torch's default, then rnnlab's extras."""

    def _check_init_options(self, forget_bias, recurrent_init, spectral_radius, bias):
        if recurrent_init not in ("default", "orthogonal"):
            raise ValueError(f"Unknown recurrent_init '{recurrent_init}'. "
                             "Select from 'default' or 'orthogonal'.")
        if spectral_radius is not None and (
                isinstance(spectral_radius, bool) or not isinstance(spectral_radius, numbers.Real)
                or not 0 < spectral_radius < math.inf):
            raise ValueError(f"spectral_radius must be a positive number, got {spectral_radius!r}")
        if forget_bias is not None:
            if (isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real)
                    or not math.isfinite(forget_bias)):
                raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
            if self.mode != "LSTM":
                raise ValueError(f"forget_bias applies to the LSTM only, not to {self.mode}")
            if not bias:
                raise ValueError("forget_bias needs bias=True")
        self.forget_bias = forget_bias
        self.recurrent_init = recurrent_init
        self.spectral_radius = spectral_radius

    def _weight_groups(self):
        """Yield (w_hh, b_ih, b_hh) for every layer and direction."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        # torch's default: every parameter ~ U(−1/√H, 1/√H)
        k = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for w in self.parameters():
            nn.init.uniform_(w, -k, k)
        H = self.hidden_size
        with torch.no_grad():
            for w_hh, b_ih, b_hh in self._weight_groups():
                for block in w_hh.split(H, 0):  # one H×H block per gate
                    if self.recurrent_init == "orthogonal":
                        nn.init.orthogonal_(block)  # W = r·Q, Q orthogonal
                        block.mul_(1.0 if self.spectral_radius is None else self.spectral_radius)
                    elif self.spectral_radius is not None:
                        rho = torch.linalg.eigvals(block.double()).abs().max().item()
                        block.mul_(self.spectral_radius / max(rho, 1e-12))
                if self.forget_bias is not None:  # b_ih_f + b_hh_f = forget_bias
                    b_ih[H : 2 * H].fill_(self.forget_bias)
                    b_hh[H : 2 * H].zero_()


class RNNBase(_InitMixin, nn.Module):
    """The multi-layer, optionally bidirectional recurrent layer behind RNN, LSTM and GRU."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None, *,
                 nonlinearity: str = "tanh", forget_bias: float | None = None,
                 recurrent_init: str = "default", spectral_radius: float | None = None,
                 backend: str = "auto"):
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
        _check_positive_int("num_layers", num_layers)
        if backend not in _BACKENDS:
            raise ValueError(f"Unknown backend '{backend}'. Select from {', '.join(_BACKENDS)}.")
        self.backend = backend
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Number)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if proj_size:
            raise ValueError("rnnlab layers do not implement proj_size; use torch.nn.LSTM")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.proj_size = 0
        self.nonlinearity = nonlinearity
        self.step = make_step(mode, nonlinearity)  # validates nonlinearity
        self._check_init_options(forget_bias, recurrent_init, spectral_radius, bias)
        self._taps = None  # set by rnnlab.trace: one telemetry tap per (layer, direction)

        D = 2 if bidirectional else 1
        G = _N_CHUNKS[mode] * hidden_size
        factory = {"device": device, "dtype": dtype}
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * D
            for direction in range(D):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (G, layer_in), "weight_hh": (G, hidden_size)}
                if bias:
                    shapes.update({"bias_ih": (G,), "bias_hh": (G,)})
                for name, shape in shapes.items():
                    self.register_parameter(name + sfx, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name + sfx)
        self.reset_parameters()

    # -- torch.nn compatibility -------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def flatten_parameters(self) -> None:
        """No-op, for code written for torch.nn (rnnlab keeps no flat weight buffer)."""

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        per = 4 if self.bias else 2
        w = self._flat_weights
        return [w[i : i + per] for i in range(0, len(w), per)]

    def weights(self, layer: int, direction: int = 0) -> tuple:
        """(W_ih, W_hh, b_ih, b_hh) of one layer and direction (biases None when bias=False)."""
        return layer_weights(self, layer, direction)

    def _weight_groups(self):
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                _, w_hh, b_ih, b_hh = self.weights(layer, d)
                yield w_hh, b_ih, b_hh

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.forget_bias is not None:
            s += f", forget_bias={self.forget_bias}"
        if self.recurrent_init != "default":
            s += f", recurrent_init={self.recurrent_init!r}"
        if self.spectral_radius is not None:
            s += f", spectral_radius={self.spectral_radius}"
        return s

    # -- forward ----------------------------------------------------------------------------
    def forward(self, input, hx=None):
        return run_layer(self, input, hx, step=self.step, taps=self._taps,
                         fused=self._runs_fused())

    def _runs_fused(self) -> bool:
        """torch's fused kernels (oneDNN / cuDNN / native) unless the engine is asked for:
        backend="engine", or a telemetry trace is attached (``self._taps``), which always wins."""
        return self._taps is None and self.backend in ("auto", "fused")


class RNN(RNNBase):
    """Elman RNN, h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (or relu); torch.nn.RNN API."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 recurrent_init: str = "default", spectral_radius: float | None = None,
                 backend: str = "auto"):
        super().__init__("RNN", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, nonlinearity=nonlinearity,
                         recurrent_init=recurrent_init, spectral_radius=spectral_radius,
                         backend=backend)


class LSTM(RNNBase):
    """LSTM, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(c_t); torch.nn.LSTM's API (no proj_size)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *,
                 forget_bias: float | None = None, recurrent_init: str = "default",
                 spectral_radius: float | None = None, backend: str = "auto"):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype, forget_bias=forget_bias,
                         recurrent_init=recurrent_init, spectral_radius=spectral_radius,
                         backend=backend)


class GRU(RNNBase):
    """GRU, h_t = (1−z)⊙n + z⊙h_{t-1} (torch's convention); torch.nn.GRU's API."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, recurrent_init: str = "default",
                 spectral_radius: float | None = None, backend: str = "auto"):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, recurrent_init=recurrent_init,
                         spectral_radius=spectral_radius, backend=backend)


# -- single-step cells ---------------------------------------------------------------------------
class RNNCellBase(_InitMixin, nn.Module):
    """One step of a cell, torch.nn.RNNCell/LSTMCell/GRUCell's API, on the same engine (T = 1)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None, *, nonlinearity: str = "tanh",
                 forget_bias: float | None = None, recurrent_init: str = "default",
                 spectral_radius: float | None = None):
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
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
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(-1)} "
                               f"expected {self.input_size}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        lstm = self.mode == "LSTM"
        if hx is None:
            states = [x.new_zeros(B, H)] * (2 if lstm else 1)
        else:
            if lstm and not (isinstance(hx, tuple | list) and len(hx) == 2):
                raise TypeError(f"LSTMCell expects hx as a tuple (h, c), got {type(hx).__name__}")
            states = list(hx) if lstm else [hx]
            for i, s in enumerate(states):
                s = s if batched else s.unsqueeze(0)
                if tuple(s.shape) != (B, H):
                    raise RuntimeError(f"hidden{i} has inconsistent size: got {list(s.shape)}, "
                                       f"expected {[B, H]}")
                states[i] = s
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
