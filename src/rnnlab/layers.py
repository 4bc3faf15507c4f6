"""RNN / LSTM / GRU modules, drop-in compatible with torch.nn (the single-step cells are in
``rnnlab.cell_modules``).

Same constructor arguments, parameter names and shapes (``weight_ih_l0``, ``bias_hh_l1_reverse``,
``weight_hr_l0`` for an LSTM with ``proj_size``, ...), gate orders, inputs (Tensor,
PackedSequence, unbatched 2-D), return values and argument errors as
``torch.nn.RNN/LSTM/GRU``, so ``load_state_dict`` works both ways. The recurrence runs on
rnnlab's explicit BPTT engine (``rnnlab.engine``).

LSTM with ``proj_size`` P > 0 (torch's LSTM with projections): h_t = W_hr (o ⊙ tanh(c_t)),
W_hr (P, H) in ``weight_hr_l{k}``; h_0, h_n and the output have size P (the next layer's input
P·D), c_0, c_n size H.

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

import torch
from torch import Tensor, nn

from .cells import make_step
from .stack import check_dropout, layer_weights, run_layer

_N_CHUNKS = {"RNN": 1, "LSTM": 4, "GRU": 3}
_BACKENDS = ("auto", "engine", "fused")


def _check_int(name: str, value, minimum: int = 1) -> None:
    """torch's checks and messages: TypeError for a non-int (rnnlab also refuses a bool),
    ValueError below ``minimum`` (1: "must be greater than zero"; 0: "must not be negative")."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        what = "must be greater than zero" if minimum == 1 else "must not be negative"
        raise ValueError(f"{name} {what}, got {value}")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")


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
        if H == 0:  # a cell of hidden size 0: no recurrent block to shape
            return
        with torch.no_grad():
            for w_hh, b_ih, b_hh in self._weight_groups():
                for block in w_hh.split(H, 0):  # one H×H block per gate (H×P: proj_size)
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
        # torch's checks, in torch's order, with its exception types and messages
        check_dropout(dropout, num_layers)
        _check_bool("bias", bias)
        _check_bool("batch_first", batch_first)
        _check_int("input_size", input_size)
        _check_int("hidden_size", hidden_size)
        _check_int("num_layers", num_layers)
        if isinstance(proj_size, bool) or not isinstance(proj_size, int):
            raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             "projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if backend not in _BACKENDS:
            raise ValueError(f"Unknown backend '{backend}'. Select from {', '.join(_BACKENDS)}.")
        if proj_size and spectral_radius is not None and recurrent_init == "default":
            raise ValueError("spectral_radius rescales square W_hh blocks; with proj_size they "
                             "are H×P: use recurrent_init='orthogonal' (r·Q, Q semi-orthogonal)")
        self.backend = backend
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.proj_size = proj_size
        self.nonlinearity = nonlinearity
        self.step = make_step(mode, nonlinearity)  # validates nonlinearity
        self._check_init_options(forget_bias, recurrent_init, spectral_radius, bias)
        self._taps = None  # set by rnnlab.trace: one telemetry tap per (layer, direction)

        D = 2 if bidirectional else 1
        G = _N_CHUNKS[mode] * hidden_size
        factory = {"device": device, "dtype": dtype}
        R = proj_size or hidden_size  # the size of h: the projection's, else hidden_size
        self._flat_weights_names = []  # torch's order: w_ih, w_hh, b_ih, b_hh, w_hr per group
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else R * D
            for direction in range(D):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (G, layer_in), "weight_hh": (G, R)}
                if bias:
                    shapes.update({"bias_ih": (G,), "bias_hh": (G,)})
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)  # h_t = W_hr (o ⊙ tanh(c_t))
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
        per = (4 if self.bias else 2) + (1 if self.proj_size else 0)
        w = self._flat_weights
        return [w[i : i + per] for i in range(0, len(w), per)]

    def weights(self, layer: int, direction: int = 0) -> tuple:
        """(W_ih, W_hh, b_ih, b_hh) of one layer and direction (biases None when bias=False);
        an LSTM with proj_size adds its projection: (W_ih, W_hh, b_ih, b_hh, W_hr)."""
        return layer_weights(self, layer, direction)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "proj_size" not in state:  # pickled before proj_size existed (torch does the same)
            self.proj_size = 0

    def _weight_groups(self):
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                _, w_hh, b_ih, b_hh = self.weights(layer, d)[:4]
                yield w_hh, b_ih, b_hh

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
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
                 backend: str = "auto", proj_size=None):
        _refuse_proj_size(proj_size)
        super().__init__("RNN", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, nonlinearity=nonlinearity,
                         recurrent_init=recurrent_init, spectral_radius=spectral_radius,
                         backend=backend)


class LSTM(RNNBase):
    """LSTM, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(c_t) (with proj_size P > 0:
    h_t = W_hr (o⊙tanh(c_t))); torch.nn.LSTM's API."""

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
                 spectral_radius: float | None = None, backend: str = "auto", proj_size=None):
        _refuse_proj_size(proj_size)
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, recurrent_init=recurrent_init,
                         spectral_radius=spectral_radius, backend=backend)


def _refuse_proj_size(proj_size) -> None:
    """torch's RNN and GRU refuse a proj_size keyword, whatever its value."""
    if proj_size is not None:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
