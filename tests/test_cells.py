"""rnnlab.RNNCell / LSTMCell / GRUCell (one step of the equations, on the engine) against
torch.nn's cells with copied weights, and against finite differences (gradcheck)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnlab

# every test runs on both engine paths: the Python loops and the native kernels
pytestmark = pytest.mark.usefixtures("kernels")

# name -> (class name, extra constructor arguments)
CELLS = {
    "rnn_tanh": ("RNNCell", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}),
    "lstm": ("LSTMCell", {}),
    "gru": ("GRUCell", {}),
}
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
I, H, B = 3, 5, 4


def make_pair(kind, dtype=torch.float64, **kw):
    """(rnnlab cell, torch.nn cell) with the same weights, copied from torch."""
    cls, extra = CELLS[kind]
    ref = getattr(nn, cls)(I, H, dtype=dtype, **extra, **kw)
    ours = getattr(rnnlab, cls)(I, H, dtype=dtype, **extra, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("with_state", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", CELLS)
def test_cell_matches_torch(kind, batched, with_state, bias, dtype):
    ours, ref = make_pair(kind, dtype=dtype, bias=bias)
    lstm = kind == "lstm"
    g = torch.Generator().manual_seed(7)
    lead = (B,) if batched else ()
    x = torch.randn(*lead, I, generator=g, dtype=dtype)
    state = tuple(torch.randn(*lead, H, generator=g, dtype=dtype) for _ in range(1 + lstm))
    w = [torch.randn(*lead, H, generator=g, dtype=dtype) for _ in range(1 + lstm)]  # loss weights
    got = []
    for cell in (ours, ref):
        xi = x.clone().requires_grad_()
        si = tuple(s.clone().requires_grad_() for s in state)
        hx = (si if lstm else si[0]) if with_state else None
        out = cell(xi, hx)
        outs = out if lstm else (out,)
        assert all(o.shape == (*lead, H) for o in outs)
        sum((o * wi).sum() for o, wi in zip(outs, w, strict=True)).backward()
        grads = [xi.grad] + ([s.grad for s in si] if with_state else [])
        got.append([*outs, *grads, *(p.grad for p in cell.parameters())])
    assert len(got[0]) == len(got[1])
    for k, (a, b) in enumerate(zip(*got, strict=True)):
        assert a is not None and b is not None, k
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert (a - b).abs().max().item() <= TOL[dtype], k


@pytest.mark.parametrize("kind", CELLS)
def test_cell_parameters_like_torch(kind):
    cls, extra = CELLS[kind]
    for bias in (True, False):
        ours = getattr(rnnlab, cls)(I, H, bias=bias, **extra)
        ref = getattr(nn, cls)(I, H, bias=bias, **extra)
        assert [(n, p.shape) for n, p in ours.named_parameters()] == [
            (n, p.shape) for n, p in ref.named_parameters()]
        assert list(ours.state_dict()) == list(ref.state_dict())
        ref.load_state_dict(ours.state_dict())  # rnnlab -> torch loads strictly
    assert repr(getattr(rnnlab, cls)(I, H, bias=False)) == repr(getattr(nn, cls)(I, H, bias=False))


@pytest.mark.parametrize("kind", CELLS)
def test_cell_gradcheck(kind):
    """∂(h', c')/∂(x, h, c, weights) by the hand-written backward step = finite differences."""
    cls, extra = CELLS[kind]
    cell = getattr(rnnlab, cls)(2, 3, dtype=torch.float64, **extra)
    names = [n for n, _ in cell.named_parameters()]
    lstm = kind == "lstm"
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(1 + lstm)]

    def f(x, *rest):
        states, params = rest[: 1 + lstm], rest[1 + lstm :]
        hx = tuple(states) if lstm else states[0]
        return torch.func.functional_call(cell, dict(zip(names, params, strict=True)), (x, hx))

    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradcheck(f, (x, *states, *params))

