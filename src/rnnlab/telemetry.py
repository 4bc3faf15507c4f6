"""Telemetry: watch backpropagation through time as it runs.

    with rnnlab.trace(model) as tr:
        loss = criterion(model(x), y)
        loss.backward()
    tr.grad_h        # (L·D, T): batch mean of ‖∂L/∂h_t‖₂ for every layer/direction and step
    tr.grad_c        # (L·D, T): the same for the LSTM cell state (None for RNN and GRU)
    tr.gates["f"]    # {"mean": (L·D, T), "saturated": (L·D, T)}

What is recorded, for every recurrent layer inside the module, rnnlab's (rnnlab.RNN / LSTM /
GRU) or torch.nn's (torch.nn.RNN / LSTM / GRU), rows k = layer·num_directions + direction (the
order of torch's h_n), columns the time steps t = 0..T−1 in input order (also for the reverse
direction):

- ``grad_h[k, t]`` = mean over the batch of ‖∂L/∂h_t‖₂, the *total* gradient reaching h_t: from
  the loss at t, from h_{t+1} (through the recurrence) and from the layer above; exactly what
  ``h_t.retain_grad()`` would give, averaged over the batch. For an LSTM with ``proj_size`` this is
  the gradient reaching the projected state h_t = W_hr (o ⊙ tanh(c_t)) (size proj_size), the h_t
  the layer outputs and feeds back;
- ``grad_c[k, t]``: the same for the LSTM cell state c_t (from c_{t+1} and from h_t);
- ``gates[name]["mean"][k, t]``: the gate's mean over batch and units at step t, and
  ``gates[name]["saturated"][k, t]`` the fraction of its values that are saturated: σ gates
  (i, f, o, r, z) below 0.05 or above 0.95, tanh-valued gates (LSTM g, GRU n) with |v| > 0.95.
  The vanilla RNN has no gates: its activation h_t is reported as "h" (tanh: |h| > 0.95;
  relu: "saturated" counts the dead units, h = 0).

With packed input (PackedSequence), step t averages over the sequences still active at t (an
empty batch records zeros).

Double backward (``create_graph=True``, e.g. a gradient penalty) is recorded too: that backward
replays the forward with the reference equations, and the record holds the same totals ∂L/∂h_t,
∂L/∂c_t of that (first-order) backward.

The scan-trained layers (``ScanRNNBase``: rnnlab.MinGRU / MinLSTM / LRU) are recorded alike:
``grad_h`` is ‖δ_t‖₂, the total adjoint of the state, δ_t = ∂L/∂h_t|local + conj(a_{t+1}) ⊙ δ_{t+1},
which the scan's backward computes as a reverse scan (the complex 2-norm for the LRU's state);
``grad_c`` is None; ``gates`` are minGRU's update gate "z" and minLSTM's normalised gates
"f" = f/(f+i) and "i" = i/(f+i) (σ-valued: saturated below 0.05 or above 0.95); the LRU has none.

The numbers are taken where the engine computes them anyway: the forward loop leaves the gates
in a time-major buffer, the backward loop leaves the total ∂L/∂h_t (and ∂L/∂c_t) of every step in
another; the statistics are a few batched reductions over those buffers after each loop.
Tracing runs the traced layers on rnnlab's engine (never on torch's fused kernels, whatever their
``backend``), and the layers go back to normal when the ``with`` block exits, also on an
exception.

Any PyTorch model: a torch.nn.RNN / LSTM / GRU inside it runs, for the duration of the ``with``
block, on rnnlab's engine with its *own* Parameters (``rnnlab.interop.attach``: nothing is copied,
the gradients land on the model's parameters as plain autograd would put them), with torch.nn's
semantics (dropout between layers in training mode, batch_first, bidirectional, PackedSequence
sorted or not, unbatched input, a given initial state), in training or eval mode alike (no
"backward can only be called in training mode" limit as with cuDNN), the LSTM's proj_size
included. What the engine cannot run (a subclass overriding forward) is refused with an error
saying why (``interop.unsupported``).

Several forwards inside one trace (truncated BPTT chunks, a decoder stepped one token at a time):
each call of a layer is recorded separately, in order, in ``record.calls``; ``grad_h``,
``grad_c`` and ``gates`` are those of the *last* call. A call's gradients are filled in by the
backward pass through it, also when ``backward()`` runs after the ``with`` block; until then
reading them raises an error that says so.

Several recurrent layers inside the module: ``tr.layers`` maps each one's qualified name (as in
``module.named_modules()``, "" for the module itself) to its record; ``tr[name]`` is the same.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .interop import attach, attached, detach, recurrent_layers
from .masks import lengths_to_mask

SATURATION = 0.05  # σ gates: v < 0.05 or v > 0.95; tanh-valued: |v| > 0.95
# What each recorded value is: σ gates in (0, 1), tanh-valued ones in (−1, 1); the RNN's "h"
# is its activation φ (tanh, or relu: see ``gate_kind``)
GATE_KINDS = {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid",  # LSTM
              "r": "sigmoid", "z": "sigmoid", "n": "tanh",  # GRU
              "h": "tanh"}  # RNN (tanh; relu with nonlinearity="relu")
SIGMOID_GATES = frozenset(n for n, kind in GATE_KINDS.items() if kind == "sigmoid")


def gate_kind(name: str, nonlinearity: str = "tanh") -> str:
    """The kind of gate ``name``: "sigmoid", "tanh" or "relu" (the RNN's h follows φ)."""
    return "relu" if name == "h" and nonlinearity == "relu" else GATE_KINDS[name]


def saturated(name: str, v: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """The saturation rule, elementwise: σ gates v < 0.05 or v > 0.95; tanh-valued (g, n, the
    RNN's h) |v| > 0.95 (their derivative 1 − v² < 0.1); a relu RNN's h: dead units, v = 0."""
    kind = gate_kind(name, nonlinearity)
    if kind == "sigmoid":
        return (v < SATURATION) | (v > 1 - SATURATION)
    if kind == "relu":
        return v == 0
    return v.abs() > 1 - SATURATION


def _active(sizes, B, like: Tensor) -> Tensor | None:
    """(T, B) 0/1 mask of the rows active at each step; None when all are."""
    if all(s == B for s in sizes):
        return None
    return lengths_to_mask(torch.tensor(sizes, device=like.device), B).to(like.dtype)


def _step_mean(v: Tensor, mask: Tensor | None, sizes) -> Tensor:
    """v (T, B, ...): mean over the active rows of each step -> (T, ...)."""
    if mask is None:
        return v.sum(1) / max(v.shape[1], 1)  # the mean over the batch (0 for an empty batch)
    count = torch.tensor(sizes, device=v.device, dtype=v.dtype).clamp_min(1)
    count = count.view(-1, *([1] * (v.dim() - 2)))
    return torch.where(mask.bool(), v, 0).sum(1) / count  # (where: padding may hold anything)


class _Call:
    """One forward (and its backward) of one layer and direction."""

    def __init__(self):
        self.gates: dict[str, dict[str, Tensor]] = {}
        self.grad_h: Tensor | None = None
        self.grad_c: Tensor | None = None

    def record_backward(self, dh: Tensor, dc: Tensor | None, sizes) -> None:
        """dh, dc: (T, B, H) total ∂L/∂h_t, ∂L/∂c_t of every step (rows beyond a step's
        batch size are ignored)."""
        mask = _active(sizes, dh.shape[1], dh)
        self.grad_h = _step_mean(torch.linalg.vector_norm(dh, dim=2), mask, sizes)
        if dc is not None:
            self.grad_c = _step_mean(torch.linalg.vector_norm(dc, dim=2), mask, sizes)


class _Tap:
    """The engine's hook for one layer and direction: a new ``_Call`` per forward."""

    def __init__(self, nonlinearity: str):
        self.nonlinearity = nonlinearity
        self.calls: list[_Call] = []

    def saturation(self, step, like: Tensor) -> tuple[Tensor, Tensor]:
        """(centre, limit), each (n, 1): a value v of gate j is saturated when
        |v − centre_j| > limit_j (σ gates: centre ½, limit 0.45; tanh: centre 0, limit 0.95).
        For a relu RNN the engine measures |h| > 0 and ``record_forward`` turns it into h = 0."""
        kinds = [gate_kind(n, self.nonlinearity) for n in step.gate_names or ("h",)]
        centre = like.new_tensor([0.5 if k == "sigmoid" else 0.0 for k in kinds]).unsqueeze(1)
        limit = like.new_tensor([{"sigmoid": 0.5 - SATURATION, "tanh": 1 - SATURATION,
                                  "relu": 0.0}[k] for k in kinds]).unsqueeze(1)
        return centre, limit

    def record_forward(self, step, stats: Tensor, sizes) -> _Call:
        """stats: (T, 2, n) per step [mean, fraction saturated] of each gate (in
        ``step.gate_names`` order; the RNN's one "gate" is h_t), over the step's active rows.
        Returns the call record the backward will fill."""
        call = _Call()
        names = step.gate_names or ("h",)
        sat = stats[:, 1]
        if names == ("h",) and self.nonlinearity == "relu":
            sat = 1 - sat  # measured |h| > 0; dead units are the rest
        for j, name in enumerate(names):
            call.gates[name] = {"mean": stats[:, 0, j], "saturated": sat[:, j]}
        self.calls.append(call)
        return call

    def record_scan(self, gates: dict[str, Tensor], sizes) -> _Call:
        """A scan layer's forward (``ScanRNNBase``): gates {name: (T, B, N)}, σ-valued, and the
        step sizes (active rows per step). Returns the call record its backward will fill."""
        call = _Call()
        for name, v in gates.items():
            v = v.detach()
            mask = _active(sizes, v.shape[1], v)
            sat = saturated(name, v).to(v.dtype)  # σ-valued: v < 0.05 or v > 0.95
            call.gates[name] = {"mean": _step_mean(v.mean(2), mask, sizes),
                                "saturated": _step_mean(sat.mean(2), mask, sizes)}
        self.calls.append(call)
        return call


class CallRecord:
    """One forward/backward of a recurrent layer, all its layers and directions."""

    def __init__(self, name: str, parts: list[_Call], has_cell: bool):
        self.name, self._parts, self._has_cell = name, parts, has_cell

    def _grads(self, field: str) -> Tensor:
        rows = [getattr(p, field) for p in self._parts]
        if all(r is None for r in rows):
            where = f"layer '{self.name}'" if self.name else "the traced layer"
            raise RuntimeError(f"no backward pass has gone through {where} yet: call "
                               "loss.backward() on a loss that depends on its output")
        T = next(r for r in rows if r is not None).shape[0]
        like = next(r for r in rows if r is not None)
        # a direction no gradient reached (its output unused) has ∂L/∂h_t = 0
        return torch.stack([r if r is not None else like.new_zeros(T) for r in rows])

    @property
    def grad_h(self) -> Tensor:
        """(L·D, T): batch mean of ‖∂L/∂h_t‖₂, the total gradient reaching h_t (the projected
        h_t of an LSTM with proj_size)."""
        return self._grads("grad_h")

    @property
    def grad_c(self) -> Tensor | None:
        """(L·D, T): batch mean of ‖∂L/∂c_t‖₂ (LSTM); None for RNN and GRU."""
        return self._grads("grad_c") if self._has_cell else None

    @property
    def gates(self) -> dict[str, dict[str, Tensor]]:
        """{gate: {"mean": (L·D, T), "saturated": (L·D, T)}}."""
        names = self._parts[0].gates.keys()
        return {g: {stat: torch.stack([p.gates[g][stat] for p in self._parts])
                    for stat in ("mean", "saturated")} for g in names}


class LayerRecord:
    """Everything recorded for one recurrent layer: ``calls`` (one ``CallRecord`` per forward,
    in order) and, for the last call, ``grad_h``, ``grad_c`` and ``gates``."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        D = 2 if module.bidirectional else 1
        self.taps = [_Tap(getattr(module, "nonlinearity", "tanh"))
                     for _ in range(module.num_layers * D)]

    @property
    def calls(self) -> list[CallRecord]:
        n = min(len(t.calls) for t in self.taps)
        return [CallRecord(self.name, [t.calls[i] for t in self.taps], self.module.mode == "LSTM")
                for i in range(n)]

    def _last(self) -> CallRecord:
        calls = self.calls
        if not calls:
            where = f"layer '{self.name}'" if self.name else "the traced layer"
            raise RuntimeError(f"{where} has not run a forward pass inside the trace")
        return calls[-1]

    @property
    def grad_h(self) -> Tensor:
        return self._last().grad_h

    @property
    def grad_c(self) -> Tensor | None:
        return self._last().grad_c

    @property
    def gates(self) -> dict[str, dict[str, Tensor]]:
        return self._last().gates

    def __repr__(self) -> str:
        return (f"LayerRecord({self.name!r}, {type(self.module).__name__}, "
                f"calls={len(self.calls)})")


class Trace:
    """What ``rnnlab.trace`` yields: per-layer records (``layers``, ``tr[name]``), and
    ``grad_h`` / ``grad_c`` / ``gates`` directly when exactly one recurrent layer is traced."""

    def __init__(self, layers: dict[str, LayerRecord]):
        self.layers = layers

    def __getitem__(self, name: str) -> LayerRecord:
        if name not in self.layers:
            raise KeyError(f"no traced recurrent layer named {name!r}; "
                           f"traced: {', '.join(map(repr, self.layers))}")
        return self.layers[name]

    def _single(self) -> LayerRecord:
        if len(self.layers) != 1:
            raise AttributeError(
                f"the traced module holds {len(self.layers)} recurrent layers "
                f"({', '.join(map(repr, self.layers))}); pick one with tr[name] or tr.layers")
        return next(iter(self.layers.values()))

    @property
    def grad_h(self) -> Tensor:
        return self._single().grad_h

    @property
    def grad_c(self) -> Tensor | None:
        return self._single().grad_c

    @property
    def gates(self) -> dict[str, dict[str, Tensor]]:
        return self._single().gates

    def summary(self) -> dict:
        """Plain data, on the CPU: {layer name: {"grad_h": (L·D, T), "grad_c": (L·D, T) or None,
        "gates": {gate: {"mean": (L·D, T), "saturated": (L·D, T)}}, "directions": D}}, the
        calls of a layer joined along time (a decoder stepped token by token reads as one
        sequence); a call no backward reached has NaN gradients; a layer that never ran is left
        out."""
        def cat(vs):
            return torch.cat([v.detach().cpu() for v in vs], 1)

        def grads(call, field, K, T):
            try:
                return getattr(call, field)
            except RuntimeError:  # no backward pass went through this call
                return torch.full((K, T), math.nan)

        out = {}
        for name, layer in self.layers.items():
            calls = layer.calls
            if not calls:
                continue
            gates = [c.gates for c in calls]
            K, Ts = len(layer.taps), [next(iter(g.values()))["mean"].shape[1] for g in gates]
            rec = {f: cat([grads(c, f, K, T) for c, T in zip(calls, Ts, strict=True)])
                   for f in ("grad_h", "grad_c")[: 1 + calls[0]._has_cell]}
            out[name] = {"grad_h": rec["grad_h"], "grad_c": rec.get("grad_c"),
                         "gates": {g: {s: cat([c[g][s] for c in gates]) for s in stats}
                                   for g, stats in gates[0].items()},
                         "directions": 2 if layer.module.bidirectional else 1}
        return out

    def __repr__(self) -> str:
        return f"Trace({list(self.layers)})"


@contextmanager
def trace(module: nn.Module):
    """Record per-step gradient norms and gate statistics of every recurrent layer in ``module``
    (rnnlab's or torch.nn's) during the forward and backward passes run inside the ``with``
    block."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"trace expects an nn.Module, got {type(module).__name__}")
    found = recurrent_layers(module)
    if not found:
        raise ValueError(f"no recurrent layer (rnnlab.RNN/LSTM/GRU/MinGRU/MinLSTM/LRU or "
                         f"torch.nn.RNN/LSTM/GRU) in {type(module).__name__}")
    busy = [name or type(m).__name__ for name, m in found.items() if attached(m)]
    if busy:
        raise RuntimeError(f"already being traced: {', '.join(busy)} (traces do not nest)")
    records = {name: LayerRecord(name, m) for name, m in found.items()}
    try:
        for name, m in found.items():
            attach(m, records[name].taps)
        yield Trace(records)
    finally:
        for m in found.values():
            detach(m)
