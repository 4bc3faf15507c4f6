"""What every scan-trained recurrent layer shares (rnnlab.MinGRU, MinLSTM, LRU).

These layers have a *diagonal linear* recurrence whose coefficients depend on the input only,

    h_t = a_t ⊙ h_{t−1} + b_t,     (a_t, b_t) = f(x_t)      (no h_{t−1} inside f)

so the whole sequence of states is a linear scan (``rnnlab.scan``): ``scan="parallel"`` (default)
computes every h_t at once, in O(log T) rounds; ``scan="sequential"`` runs the same equations
one step at a time, as they would stream, and gives the same numbers. ``scan`` is also a
settable attribute (train parallel, generate sequentially). ``layer.step(x_t, h)`` advances a
unidirectional layer by one token, O(1) memory per step, for generation and streaming.

The module API follows torch.nn.RNN: (input_size, hidden_size, num_layers, bias, batch_first,
dropout, bidirectional, device, dtype); input (T, B, I) (batch_first: (B, T, I)), unbatched
(T, I), or a PackedSequence; an optional initial state h_0 (num_layers·D, B, N); returns
(output (T, B, D·H), h_n (num_layers·D, B, N)) where N is the state size (H for minGRU and
minLSTM; the LRU's complex state may be wider or narrower than its output). Layer l > 0 reads
layer l−1's output (directions concatenated); ``dropout`` applies between layers in training.

Variable lengths (PackedSequence): on the padding steps of a sequence the recurrence is set to
a = 1, b = 0, which leaves the state unchanged, so h_n is the state after each sequence's last
step, and the reverse direction starts from h_0 at each sequence's own last step.

Telemetry: under ``rnnlab.trace`` the layer runs the parallel scan (same numbers), whose backward
is the reverse scan of the adjoint δ_t = ∂L/∂h_t|local + conj(a_{t+1}) ⊙ δ_{t+1}; the trace
records ‖δ_t‖₂ (the total gradient reaching h_t, complex 2-norm for the LRU) and the gates.
Calls of ``step`` are not recorded.

A subclass defines its parameters and four pieces of its equations, per layer and direction:
``_project`` (the input projection, all steps at once), ``_coefficients`` (a, b or their logs for
the scan, and the gates), ``_recur`` (one sequential step) and ``_readout`` (output from state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .layers import _check_int
from .scan import linear_scan, log_linear_scan
from .stack import _packed_to_padded, check_dropout, check_input, time_major

SCANS = ("parallel", "sequential")


class ScanRNNBase(nn.Module):
    """The multi-layer, optionally bidirectional layer behind MinGRU, MinLSTM and LRU."""

    mode = ""           # "MinGRU", "MinLSTM", "LRU" (telemetry and repr)
    default_bias = True  # the constructor's default (repr shows a departure from it)
    #: True when the output is the state (minGRU, minLSTM: h_n is the last output, as for a GRU);
    #: False for the LRU, whose complex state is read out by y = Re(C h) + D ⊙ x: a model that
    #: summarises a sequence by h_n must take the last output instead
    state_is_output = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 state_size: int | None = None, scan: str = "parallel",
                 log_space: bool = False):
        super().__init__()
        _check_int("input_size", input_size)
        _check_int("hidden_size", hidden_size)
        _check_int("num_layers", num_layers)
        if state_size is not None:
            _check_int("state_size", state_size)
        check_dropout(dropout, num_layers)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.state_size = hidden_size if state_size is None else state_size
        self.bias, self.batch_first = bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.log_space = bool(log_space)
        self.scan = scan
        self._taps = None  # set by rnnlab.trace: one telemetry tap per (layer, direction)
        self._names = tuple(self._parameter_shapes(input_size))
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            for d in range(self.num_directions):
                for name, shape in self._parameter_shapes(self.layer_input_size(layer)).items():
                    self.register_parameter(name + self._suffix(layer, d),
                                            nn.Parameter(torch.empty(shape, **factory)))
        # the subclass sets its own options, then calls self.reset_parameters()

    # -- what a subclass defines --------------------------------------------------------------
    def _parameter_shapes(self, layer_in: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def _project(self, layer: int, d: int, x: Tensor) -> Tensor:
        """x (..., I) -> the input projection (..., ·) the coefficients are made of."""
        raise NotImplementedError

    def _coefficients(self, layer: int, d: int, p: Tensor, gates: bool):
        """p (T, B, ·) -> (a, b, {gate: (T, B, N)}): the scan's coefficients (log a, log b when
        ``log_space``); a may broadcast over (T, B). The gates only when ``gates``."""
        raise NotImplementedError

    def _recur(self, layer: int, d: int, p_t: Tensor, h: Tensor) -> Tensor:
        """One sequential step: h_t from h_{t−1} and the projection p_t (B, ·)."""
        raise NotImplementedError

    def _readout(self, layer: int, d: int, h: Tensor, x: Tensor) -> Tensor:
        """States h (..., N) and the layer's input x (..., I) -> output (..., H)."""
        raise NotImplementedError

    @property
    def state_dtype(self) -> torch.dtype:
        """The dtype of h_t (the parameters' dtype; complex for the LRU)."""
        return self._get(self._names[0], 0, 0).dtype

    # -- attributes ---------------------------------------------------------------------------
    @property
    def scan(self) -> str:
        """"parallel" (the whole sequence by a linear scan) or "sequential" (step by step)."""
        return self._scan

    @scan.setter
    def scan(self, value: str) -> None:
        if value not in SCANS:
            raise ValueError(f"Unknown scan {value!r}. Select from {', '.join(map(repr, SCANS))}.")
        self._scan = value

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_input_size(self, layer: int) -> int:
        """Width of layer ``layer``'s input: input_size, then D·hidden_size."""
        return self.input_size if layer == 0 else self.hidden_size * self.num_directions

    @staticmethod
    def _suffix(layer: int, d: int) -> str:
        return f"_l{layer}" + ("_reverse" if d == 1 else "")

    def _get(self, name: str, layer: int, d: int) -> Tensor | None:
        return getattr(self, name + self._suffix(layer, d), None)

    def _options(self) -> dict:
        """{argument: (value, default)} shown by repr when value differs from default."""
        return {"state_size": (self.state_size, self.hidden_size),
                "num_layers": (self.num_layers, 1), "bias": (self.bias, self.default_bias),
                "batch_first": (self.batch_first, False), "dropout": (self.dropout, 0.0),
                "bidirectional": (self.bidirectional, False), "scan": (self.scan, "parallel")}

    def extra_repr(self) -> str:
        shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}"
                 for k, (v, default) in self._options().items() if v != default]
        return ", ".join([f"{self.input_size}, {self.hidden_size}", *shown])

    # -- forward ------------------------------------------------------------------------------
    def forward(self, input, hx: Tensor | None = None):
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        sorted_idx = unsorted_idx = sizes = None
        if packed:
            data, batch_sizes, sorted_idx, unsorted_idx = input
            sizes = tuple(batch_sizes.tolist())
            x, flat_idx = _packed_to_padded(data, sizes)  # (T, B, I), rows by decreasing length
            batched = True
        else:
            x, batched = time_major(input, self.batch_first, name)
        self._check_input(x)
        h0 = self._initial_state(hx, x, batched, sorted_idx)
        valid = None
        if sizes is not None and sizes[-1] != sizes[0]:  # (T, B, 1): the steps that count
            lengths = torch.tensor(sizes, device=x.device).unsqueeze(1)
            valid = (torch.arange(x.shape[1], device=x.device) < lengths).unsqueeze(2)

        output, h_n = self._layers(x, h0, valid, sizes)
        if packed:
            output = PackedSequence(output.reshape(-1, output.shape[2]).index_select(0, flat_idx),
                                    batch_sizes, sorted_idx, unsorted_idx)
            if unsorted_idx is not None:
                h_n = h_n.index_select(1, unsorted_idx)
        elif not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, h_n

    def _layers(self, x: Tensor, h0: Tensor, valid: Tensor | None, sizes):
        L, D = self.num_layers, self.num_directions
        parallel = self.scan == "parallel" or self._taps is not None
        sizes = sizes if sizes is not None else (x.shape[1],) * x.shape[0]  # active rows per step
        h_n, layer_in = [], x
        for layer in range(L):
            outs = []
            for d in range(D):
                k = layer * D + d
                run = self._parallel if parallel else self._sequential
                h = run(layer, d, layer_in, h0[k], valid, sizes)  # (T, B, N)
                h_n.append(h[0] if d == 1 else h[-1])
                outs.append(self._readout(layer, d, h, layer_in))
            layer_in = outs[0] if D == 1 else torch.cat(outs, 2)
            if self.dropout and self.training and layer < L - 1:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
        return layer_in, torch.stack(h_n)

    def _parallel(self, layer, d, x, h0, valid, sizes) -> Tensor:
        tap = self._taps[layer * self.num_directions + d] if self._taps is not None else None
        a, b, gates = self._coefficients(layer, d, self._project(layer, d, x), tap is not None)
        if valid is not None:  # padding steps: a = 1, b = 0 (log a = 0, log b = −inf)
            a = torch.where(valid, a, 0.0 if self.log_space else 1.0)
            b = torch.where(valid, b, float("-inf") if self.log_space else 0.0)
        on_adjoint = None
        if tap is not None:
            call = tap.record_scan(gates, sizes)
            on_adjoint = lambda delta: call.record_backward(delta, None, sizes)
        scan = log_linear_scan if self.log_space else linear_scan
        return scan(a, b, h0, reverse=d == 1, on_adjoint=on_adjoint)

    def _sequential(self, layer, d, x, h0, valid, sizes) -> Tensor:
        p = self._project(layer, d, x).unbind(0)
        T = len(p)
        hs, h = [None] * T, h0
        for t in range(T - 1, -1, -1) if d == 1 else range(T):
            h_new = self._recur(layer, d, p[t], h)
            h = h_new if valid is None else torch.where(valid[t], h_new, h)  # padding: keep h
            hs[t] = h
        return torch.stack(hs)

    # -- streaming ----------------------------------------------------------------------------
    def step(self, x_t: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Advance by one token: x_t (B, I) or (I,), h (num_layers, B, N) or None (zeros) ->
        (y_t (B, H), h_t (num_layers, B, N)); the sequential equations, nothing kept for later
        steps but h. Unidirectional layers only."""
        if self.bidirectional:
            raise RuntimeError(f"{type(self).__name__}.step streams one token at a time; a "
                               "bidirectional layer needs the whole sequence (call it instead)")
        if not isinstance(x_t, Tensor) or x_t.dim() not in (1, 2):
            raise ValueError(f"{type(self).__name__}.step: expected x_t of shape (B, "
                             f"input_size) or (input_size,), got "
                             f"{getattr(x_t, 'shape', type(x_t).__name__)}")
        batched = x_t.dim() == 2
        x = x_t.unsqueeze(0) if batched else x_t.view(1, 1, -1)  # (1, B, I)
        self._check_input(x)
        h0 = self._initial_state(h, x, batched, None)
        states, inp = [], x[0]
        for layer in range(self.num_layers):
            h_new = self._recur(layer, 0, self._project(layer, 0, inp), h0[layer])
            states.append(h_new)
            inp = self._readout(layer, 0, h_new, inp)
            if self.dropout and self.training and layer < self.num_layers - 1:
                inp = F.dropout(inp, self.dropout, training=True)
        h_n = torch.stack(states)
        return (inp, h_n) if batched else (inp.squeeze(0), h_n.squeeze(1))

    # -- checks -------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        check_input(type(self).__name__, x, self.input_size, self._get(self._names[0], 0, 0))

    def _initial_state(self, hx, x: Tensor, batched: bool, sorted_idx) -> Tensor:
        """(L·D, B, N) initial state, in the state's dtype (complex for the LRU)."""
        shape = (self.num_layers * self.num_directions, x.shape[1], self.state_size)
        dtype = self.state_dtype
        if hx is None:
            return x.new_zeros(shape, dtype=dtype)
        if not isinstance(hx, Tensor):
            raise TypeError(f"hx must be a Tensor, got {type(hx).__name__}")
        want = 3 if batched else 2
        if hx.dim() != want:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got "
                               f"{hx.dim()}-D tensor")
        h = hx if batched else hx.unsqueeze(1)
        if tuple(h.shape) != shape:
            raise RuntimeError(f"Expected hidden size {shape}, got {list(h.shape)}")
        if h.dtype != dtype and not (dtype.is_complex and h.dtype == x.dtype):
            raise RuntimeError(f"hx must have the type {dtype}, got type {h.dtype}")
        if sorted_idx is not None:
            h = h.index_select(1, sorted_idx)
        return h.to(dtype)
