"""Empty problems as torch.nn has them: a batch of 0 rows (layers, both backends, float32 where
the engine's GEMMs go to oneDNN, and float64), and cells of hidden (or input) size 0. Outputs,
states and gradients have torch's empty shapes; gradients of non-empty parameters are zeros."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnlab

MODES = {"rnn": ("RNN", {}), "lstm": ("LSTM", {}), "lstm_proj": ("LSTM", {"proj_size": 3}),
         "gru": ("GRU", {})}


def forward_backward(m, x, hx):
    xi = x.clone().requires_grad_()
    si = None if hx is None else tuple(s.clone().requires_grad_() for s in hx)
    out, hn = m(xi, None if si is None else (si if len(si) == 2 else si[0]))
    finals = hn if isinstance(hn, tuple) else (hn,)
    (out.sum() + sum(f.sum() for f in finals)).backward()
    grads = [xi.grad] + ([s.grad for s in si] if si is not None else [])
    return [out, *finals, *grads, *(p.grad for p in m.parameters())]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", ["engine", "fused"])
@pytest.mark.parametrize("with_state", [False, True], ids=["noh0", "h0"])
@pytest.mark.parametrize("kind", MODES)
def test_empty_batch_like_torch(kind, with_state, backend, dtype):
    cls, extra = MODES[kind]
    H = 130  # above gemm.SMALL_WIDTH: the oneDNN GEMMs in float32
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, dtype=dtype, **extra)
    ref = getattr(nn, cls)(4, H, **kw)
    ours = getattr(rnnlab, cls)(4, H, backend=backend, **kw)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(0, 5, 4, dtype=dtype)  # batch_first: B = 0, T = 5
    R = extra.get("proj_size") or H
    hx = None
    if with_state:
        hx = (torch.zeros(4, 0, R, dtype=dtype),) + ((torch.zeros(4, 0, H, dtype=dtype),)
                                                      if cls == "LSTM" else ())
    got, want = forward_backward(ours, x, hx), forward_backward(ref, x, hx)
    assert [v.shape for v in got] == [v.shape for v in want]
    assert got[0].shape == (0, 5, 2 * R)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b)  # all empty, or zeros


def test_empty_batch_under_trace():
    m = rnnlab.LSTM(3, 4, 2)
    with rnnlab.trace(m) as tr:
        out, _ = m(torch.randn(6, 0, 3))
        out.sum().backward()
    assert tr.grad_h.shape == (2, 6) and torch.equal(tr.grad_h, torch.zeros(2, 6))
    assert tr.gates["f"]["mean"].shape == (2, 6)


CELLS = {"rnn_relu": ("RNNCell", {"nonlinearity": "relu"}), "rnn_tanh": ("RNNCell", {}),
         "lstm": ("LSTMCell", {}), "gru": ("GRUCell", {})}


@pytest.mark.parametrize("sizes", [(10, 0), (0, 4)], ids=["hidden0", "input0"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", CELLS)
def test_zero_size_cell_like_torch(kind, batched, sizes):
    cls, extra = CELLS[kind]
    I, H = sizes
    ref = getattr(nn, cls)(I, H, **extra)
    ours = getattr(rnnlab, cls)(I, H, **extra)
    ours.load_state_dict(ref.state_dict())
    assert repr(ours) == repr(ref).replace("nonlinearity=relu", "nonlinearity='relu'")
    lead = (3,) if batched else ()
    x = torch.randn(*lead, I)
    states = tuple(torch.randn(*lead, H) for _ in range(2 if cls == "LSTMCell" else 1))
    got = []
    for cell in (ours, ref):
        xi = x.clone().requires_grad_()
        si = tuple(s.clone().requires_grad_() for s in states)
        out = cell(xi, si if len(si) == 2 else si[0])
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.sum() for o in outs).backward()
        got.append([*outs, xi.grad, *(s.grad for s in si), *(p.grad for p in cell.parameters())])
    for a, b in zip(*got, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)
