"""The probes' trajectory: find the recurrent layer, take its real input, and run it step by step.

Every probe re-runs the recurrence itself from the layer's weights, by default in float64, with
the reference equations (``rnnlab.equations.unroll``), and reads the states and gates of every
step from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..equations import unroll
from ..layers import RNNBase


def find_recurrent(module: nn.Module) -> RNNBase:
    """The rnnlab RNN/LSTM/GRU inside ``module``: itself, ``module.backbone``, or the only one."""
    if isinstance(module, RNNBase):
        return module
    backbone = getattr(module, "backbone", None)
    if isinstance(backbone, RNNBase):
        return backbone
    found = [m for m in module.modules() if isinstance(m, RNNBase)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"{type(module).__name__} contains no rnnlab RNN/LSTM/GRU layer")
    raise ValueError(f"{type(module).__name__} contains {len(found)} rnnlab recurrent layers; "
                     "pass the one to probe (e.g. model.encoder)")


class _Captured(Exception):
    """Raised inside the forward pre-hook to stop a model's forward once the input is seen."""


def layer_input(module: nn.Module, x, hx=None):
    """(layer, input, hx): the recurrent layer and exactly what it takes (its layout, a
    PackedSequence, or one unbatched sequence). For the layer itself that is ``x`` and ``hx``;
    for a model, what its forward passes the layer, seen by a pre-hook that then stops the forward
    (run once, in eval mode, without grad: no dropout); ``hx`` replaces the state it passed."""
    layer = find_recurrent(module)
    if module is not layer:
        x, seen_hx = _capture(module, layer, x)
        hx = seen_hx if hx is None else hx
    if isinstance(x, Tensor):
        if x.dim() not in (2, 3):
            raise ValueError(f"{type(layer).__name__}: expected input to be 2D or 3D, got "
                             f"{x.dim()}D tensor instead")
    elif not isinstance(x, PackedSequence):
        raise TypeError(f"expected a Tensor or PackedSequence, got {type(x).__name__}")
    return layer, x, hx


def _capture(module: nn.Module, layer: RNNBase, x):
    seen = {}

    def hook(_mod, args, kwargs):
        seen["input"] = args[0] if args else kwargs.get("input")
        seen["hx"] = args[1] if len(args) > 1 else kwargs.get("hx")
        raise _Captured

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    was_training = module.training
    module.eval()  # no dropout on the captured input
    try:
        with torch.no_grad():
            try:
                module(x)
            except TypeError:  # forward wants more (a seq2seq model): its encoder alone
                if not hasattr(module, "encode"):
                    raise
                module.encode(x, None)
    except _Captured:
        pass
    finally:
        handle.remove()
        module.train(was_training)
    if "input" not in seen:
        raise ValueError(f"{type(module).__name__}(x) never called its recurrent layer")
    return seen["input"], seen["hx"]


def input_dims(layer: RNNBase, x) -> tuple[int, int, int]:
    """(B, T, I) of what the layer takes (B = 1 for one unbatched sequence)."""
    if isinstance(x, PackedSequence):
        return int(x.batch_sizes[0]), len(x.batch_sizes), x.data.shape[-1]
    if x.dim() == 2:
        return 1, x.shape[0], x.shape[1]
    B, T = (x.shape[0], x.shape[1]) if layer.batch_first else (x.shape[1], x.shape[0])
    return B, T, x.shape[2]


@dataclass
class Record:
    """One layer and direction along the trajectory; tensors (B, T, ·) in processing order
    (the reverse direction's step 0 is input time T−1)."""

    layer: int
    direction: int
    h: Tensor  # (B, T, H): h_t after step t
    h_prev: Tensor  # (B, T, H): h_{t-1} before step t (h0 at t = 0)
    c: Tensor | None  # (B, T, H): LSTM c_t
    c_prev: Tensor | None  # (B, T, H): LSTM c_{t-1}
    gates: dict  # name -> (B, T, H) post-activation gates (RNN: {"h": h_t})
    active: Tensor | None  # (B, T) bool: the rows whose sequence includes step t (packed input)
    w_hh: Tensor  # (G·H, H) the recurrent weight, detached, in the trajectory's dtype
    hn: Tensor | None  # (B, T, H): GRU W_hn h_{t-1} + b_hn


def _to(v, dtype):
    """A detached copy of a Tensor / PackedSequence / (h, c) state in ``dtype``."""
    if v is None:
        return None
    if isinstance(v, PackedSequence):
        return PackedSequence(v.data.detach().to(dtype), v.batch_sizes, v.sorted_indices,
                              v.unsorted_indices)
    if isinstance(v, tuple | list):
        return tuple(_to(s, dtype) for s in v)
    return v.detach().to(dtype)


def trajectory(module: nn.Module, x, hx=None, dtype=torch.float64, layers: str = "last",
               direction: int = 0, equal_lengths: bool = False):
    """(layer, records, batched): run every layer (the lower ones feed the last) with the
    reference equations; records of the last layer's ``direction`` (layers="last") or of every
    layer and direction (layers="all", k = l·D + d); batched False for one unbatched sequence.
    equal_lengths: packed input must hold sequences of one length (else ValueError)."""
    layer, inp, hx = layer_input(module, x, hx)
    if getattr(layer, "proj_size", 0):  # their closed forms use W_hh as the state-to-state map
        raise ValueError("the trajectory probes (Jacobians, Lyapunov exponents, gate statistics) "
                         "do not implement the LSTM's proj_size (h_t = W_hr (o ⊙ tanh(c_t)))")
    D = layer.num_directions
    if direction not in range(D):
        raise ValueError(f"direction must be in 0..{D - 1}, got {direction}")
    if equal_lengths and isinstance(inp, PackedSequence) and int(inp.batch_sizes[-1]) != int(
            inp.batch_sizes[0]):
        raise ValueError("the Jacobian and Lyapunov probes need equal-length sequences (the "
                         "final state of every sequence at the same step); got a PackedSequence "
                         "of several lengths")
    batched = not (isinstance(inp, Tensor) and inp.dim() == 2)
    weights = [_to(layer.weights(l, d), dtype) for l in range(layer.num_layers) for d in range(D)]
    with torch.no_grad():
        steps = unroll(layer, _to(inp, dtype), _to(hx, dtype), weights=weights).steps
    st = lambda seq: torch.stack(seq, 1) if seq else None  # list of (B, H) -> (B, T, H)
    records = []
    for k, s in enumerate(steps):
        if layers != "all" and not (s.layer == layer.num_layers - 1 and s.direction == direction):
            continue
        h, h_prev = st(s.h), st(s.h_prev)
        gates = {name: st(v) for name, v in s.gates.items()} or {"h": h}  # the RNN: h_t
        w_ih, w_hh, b_ih, b_hh = weights[k]
        hn = None
        if layer.mode == "GRU":
            H = layer.hidden_size
            hn = h_prev @ w_hh[2 * H:].T  # W_hn h_{t-1} (+ b_hn): the term r multiplies
            hn = hn if b_hh is None else hn + b_hh[2 * H:]
        records.append(Record(s.layer, s.direction, h, h_prev, st(s.c) if s.c else None,
                              st(s.c_prev) if s.c else None, gates,
                              st(s.active) if s.active else None, w_hh, hn))
    return layer, records, batched
