"""A recurrent layer's forward: num_layers × directions of the engine, in torch.nn's layouts.

``run_layer(m, input, hx)`` is the forward of ``rnnlab.RNN/LSTM/GRU``: the input as torch.nn
takes it (time-major (T, B, I), batch_first (B, T, I), one sequence (T, I), a PackedSequence
sorted or not) and an optional initial state, the checks and errors torch.nn gives, then layer
by layer and direction by direction ``rnnlab.engine.run`` (dropout on every layer's output but
the last's, in training mode, as torch.nn), and the returns of torch.nn: (output, h_n) or
(output, (h_n, c_n)).

It reads only what ``torch.nn.RNNBase`` has too (mode, input_size, hidden_size, num_layers,
batch_first, dropout, training, bidirectional, nonlinearity, and the Parameters by torch's names,
``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so the same function runs rnnlab's layers and,
for ``rnnlab.trace``, torch.nn's own modules on the engine with their own Parameters.
"""

from __future__ import annotations

import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence

from . import engine
from .cells import make_step


def layer_weights(m, layer: int, direction: int = 0) -> tuple:
    """(W_ih, W_hh, b_ih, b_hh) of one layer and direction of ``m`` by torch's names (biases
    None when bias=False); an LSTM with proj_size adds its projection W_hr."""
    sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
    get = lambda n: getattr(m, n + sfx, None)
    w = get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")
    return w + (get("weight_hr"),) if getattr(m, "proj_size", 0) else w


def step_of(m):
    """The cell equations (``rnnlab.cells``) of a recurrent layer, rnnlab's or torch.nn's
    (whose modes are "RNN_TANH", "RNN_RELU", "LSTM", "GRU")."""
    mode = "RNN" if m.mode.startswith("RNN") else m.mode
    return make_step(mode, getattr(m, "nonlinearity", "tanh"))


def run_layer(m, input, hx=None, *, step=None, taps=None, fused: bool = False):
    """``m``'s forward, torch.nn.RNN/LSTM/GRU's: (input, hx) -> (output, h_n or (h_n, c_n)), on
    rnnlab's engine with ``m``'s own Parameters (``taps``: one telemetry tap per layer·direction),
    or on torch's fused kernels when ``fused`` (rnnlab's layers). ``m`` is rnnlab's layer or any
    object with torch.nn.RNNBase's attributes (mode, sizes, num_layers, batch_first, dropout,
    training, bidirectional, nonlinearity, Parameters by torch's names)."""
    step = step_of(m) if step is None else step
    name = type(m).__name__
    packed = isinstance(input, PackedSequence)
    if packed:
        data, batch_sizes, sorted_idx, unsorted_idx = input
        sizes = tuple(batch_sizes.tolist())
        if fused:  # torch's kernels take the packed data as it is
            # a (T, B, I) stand-in for the checks below (shape, dtype, device): no copy
            x = data[:1].unsqueeze(1).expand(len(sizes), sizes[0], data.shape[1])
        else:
            x, flat_idx = _packed_to_padded(data, sizes)  # (T, B, I), rows by decreasing length
            if all(s == sizes[0] for s in sizes):
                flat_idx = None  # every row runs every step: the padded layout is the packed one
        batched = True
    else:
        x, batched = time_major(input, m.batch_first, name)
        sizes = sorted_idx = unsorted_idx = flat_idx = None
    check_input(name, x, m.input_size, m.weight_ih_l0)

    B, D = x.shape[1], 2 if m.bidirectional else 1
    H = getattr(m, "proj_size", 0) or m.hidden_size  # the size of h: P with a projection
    h0, c0 = _initial_state(m, hx, x, B, batched, sorted_idx)

    if fused:
        output, h_n, c_n = _fused(m, step, data if packed else x,
                                  batch_sizes if packed else None, h0, c0)
    else:
        output, h_n, c_n = _engine(m, step, x, sizes, h0, c0, taps, flat_idx)
    if packed:
        if not fused:
            output = output.reshape(-1, D * H)
            output = output if flat_idx is None else output.index_select(0, flat_idx)
        output = PackedSequence(output, batch_sizes, sorted_idx, unsorted_idx)
        if unsorted_idx is not None:
            h_n = h_n.index_select(1, unsorted_idx)
            c_n = c_n.index_select(1, unsorted_idx) if c_n is not None else None
    elif not batched:
        output, h_n = output.squeeze(1), h_n.squeeze(1)
        c_n = c_n.squeeze(1) if c_n is not None else None
    elif m.batch_first:
        output = output.transpose(0, 1)
    return output, ((h_n, c_n) if m.mode == "LSTM" else h_n)


def _fused(m, step, x, batch_sizes, h0, c0):
    """torch's own kernels on ``m``'s very Parameters, called as torch.nn.RNNBase does:
    x time-major (T, B, I) or packed data (N, I) with its batch_sizes."""
    fn = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh,
          "RNN_RELU": _VF.rnn_relu}[step.mode]
    hx = (h0, c0) if m.mode == "LSTM" else h0
    args = (m._flat_weights, m.bias, m.num_layers, m.dropout, m.training, m.bidirectional)
    if batch_sizes is None:
        res = fn(x, hx, *args, False)  # batch_first=False: x is time-major here
    else:
        res = fn(x, batch_sizes, hx, *args)
    return res[0], res[1], (res[2] if m.mode == "LSTM" else None)


def _engine(m, step, x, sizes, h0, c0, taps, flat_idx=None):
    """rnnlab's explicit BPTT engine, layer by layer and direction by direction; dropout on
    every layer's output but the last's, in training mode (as torch.nn)."""
    L, D = m.num_layers, 2 if m.bidirectional else 1
    h_n, c_n = [], []
    layer_in = x
    for layer in range(L):
        outs = []
        for d in range(D):
            k = layer * D + d
            w = layer_weights(m, layer, d)  # (W_ih, W_hh, b_ih, b_hh[, W_hr])
            out, h, c = engine.run(step, layer_in, h0[k], None if c0 is None else c0[k], *w[:4],
                                   batch_sizes=sizes, reverse=d == 1,
                                   tap=None if taps is None else taps[k],
                                   w_hr=w[4] if len(w) > 4 else None)
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_in = outs[0] if D == 1 else torch.cat(outs, 2)
        if m.dropout and m.training and layer < L - 1:
            layer_in = _dropout(layer_in, m.dropout, flat_idx)
    return layer_in, torch.stack(h_n), (torch.stack(c_n) if c0 is not None else None)


def _dropout(x: Tensor, p: float, flat_idx: Tensor | None) -> Tensor:
    """Dropout between layers as torch.nn draws it: over x (T, B, F), or, for packed input, over
    the packed rows alone (``flat_idx``), so that on the CPU the masks are torch's own for the
    same random state. Padding rows come out zero."""
    if flat_idx is None:
        return F.dropout(x, p, training=True)
    flat = x.reshape(-1, x.shape[2])
    kept = F.dropout(flat.index_select(0, flat_idx), p, training=True)
    return torch.zeros_like(flat).index_copy(0, flat_idx, kept).view_as(x)


def _initial_state(m, hx, x, B, batched, sorted_idx):
    """(h_0 (L·D, B, R), c_0 (L·D, B, H) or None) from hx, with torch's checks; R is the size
    of h (proj_size with a projection)."""
    LD = m.num_layers * (2 if m.bidirectional else 1)
    lstm = m.mode == "LSTM"
    proj = getattr(m, "proj_size", 0)
    shapes = [(LD, B, proj or m.hidden_size), (LD, B, m.hidden_size)]
    if hx is None:
        h0 = x.new_zeros(shapes[0])
        return h0, ((x.new_zeros(shapes[1]) if proj else h0) if lstm else None)
    states = hx if lstm else (hx,)
    if lstm and not isinstance(hx, tuple | list):
        raise TypeError(f"LSTM expects hx as a tuple (h_0, c_0), got {type(hx).__name__}")
    if lstm and len(hx) != 2:  # torch: RuntimeError "lstm expects two hidden states"
        raise RuntimeError(f"LSTM expects two hidden states (h_0, c_0), got {len(hx)}")
    for s in states:
        if not isinstance(s, Tensor):
            raise TypeError(f"hx must be a Tensor, got {type(s).__name__}")
    want = 3 if batched else 2
    if any(s.dim() != want for s in states):  # torch's words
        kind = "batched 3-D" if batched else "unbatched 2-D"
        got = ", ".join(f"{s.dim()}-D" for s in states)
        raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                           f"({got}) tensors" if lstm else f"For {kind} input, hx should "
                           f"also be {want}-D but got {got} tensor")
    out = []
    for i, s in enumerate(states):
        s = s if batched else s.unsqueeze(1)
        if tuple(s.shape) != shapes[i]:
            what = f"hidden[{i}]" if lstm else "hidden"
            raise RuntimeError(f"Expected {what} size {shapes[i]}, got {list(s.shape)}")
        if s.device != x.device:
            raise RuntimeError(f"Input and hidden tensors are not at the same device, found "
                               f"input tensor at {x.device} and hidden tensor at {s.device}")
        if s.dtype != x.dtype:
            raise RuntimeError(f"hx must have the type {x.dtype}, got type {s.dtype}")
        if sorted_idx is not None:
            s = s.index_select(1, sorted_idx)
        out.append(s)
    return out[0], (out[1] if lstm else None)


def check_dropout(dropout, num_layers: int) -> None:
    """torch's check and warning for ``dropout`` (between layers)."""
    if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Number)
            or not 0 <= dropout <= 1):
        raise ValueError("dropout should be a number in range [0, 1] representing the "
                         f"probability of an element being zeroed, got {dropout!r}")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                      "non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", stacklevel=4)


def time_major(input, batch_first: bool, name: str) -> tuple[Tensor, bool]:
    """A Tensor input as torch.nn.RNN takes it, (T, B, I) ((B, T, I) when batch_first) or
    unbatched (T, I) -> (time-major (T, B, I) view, batched)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: expected a Tensor or PackedSequence, "
                        f"got {type(input).__name__}")
    if input.dim() not in (2, 3):  # torch's words (its RNN says "tensor", not the others)
        raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D "
                         f"{'tensor ' if name == 'RNN' else ''}instead")
    batched = input.dim() == 3
    x = input if batched else input.unsqueeze(1)
    if batched and batch_first:
        x = x.transpose(0, 1)
    return x, batched


def check_input(name: str, x: Tensor, input_size: int, w: Tensor) -> None:
    """Time-major x (T, B, I) against the layer: T > 0, I = input_size, w's dtype and device
    (torch raises the same errors)."""
    if x.size(0) == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    if x.size(-1) != input_size:
        raise RuntimeError(f"input.size(-1) must be equal to input_size. "
                           f"Expected {input_size}, got {x.size(-1)}")
    if x.dtype != w.dtype:  # torch's ValueError, word for word (it says "RNN" for all three)
        raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype "
                         f"({w.dtype}). Convert input: input.to({w.dtype}), or convert "
                         f"model: model.to({x.dtype})")
    if x.device != w.device:
        raise RuntimeError(f"Input and parameter tensors are not at the same device, found "
                           f"input tensor at {x.device} and parameter tensor at {w.device}")


def _packed_to_padded(data: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """PackedSequence data (N, I) -> zero-padded time-major (T, B, I), and the flat row index
    of every packed element in that (T·B) layout (packed order is time-major too)."""
    T, B = len(sizes), sizes[0]
    active = torch.arange(B)[None, :] < torch.tensor(sizes)[:, None]  # (T, B)
    flat_idx = active.flatten().nonzero().squeeze(1).to(data.device)
    padded = data.new_zeros(T * B, data.shape[1]).index_copy(0, flat_idx, data)
    return padded.view(T, B, -1), flat_idx
