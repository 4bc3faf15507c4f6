"""Double backward through rnnlab's engine (create_graph=True): gradgradcheck in float64 for every
layer and cell, dense and packed, and second-order quantities against torch.nn with copied
weights. A backward with grad mode on replays the forward with rnnlab.equations under autograd;
the first-order backward stays the hand-written loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab

D64 = torch.float64
LAYERS = {
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "lstm_proj": ("LSTM", {"proj_size": 1}),
    "gru": ("GRU", {}),
}
SHAPES = [pytest.param(1, False, None, id="L1-uni-dense"),
          pytest.param(2, True, [3, 1], id="L2-bi-packed")]


def pair(kind, input_size, hidden_size):
    """(rnnlab layer on the engine, torch.nn layer), 2 layers, bidirectional, float64, the same
    weights."""
    cls, extra = LAYERS[kind]
    kw = dict(num_layers=2, bidirectional=True, dtype=D64, **extra)
    ref = getattr(nn, cls)(input_size, hidden_size, **kw)
    ours = getattr(rnnlab, cls)(input_size, hidden_size, backend="engine", **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def layer_function(layer, lengths, lstm):
    """f(x, *states, *params) -> the layer's outputs, for gradcheck / gradgradcheck."""
    names = [n for n, _ in layer.named_parameters()]
    n_states = 2 if lstm else 1

    def f(x, *rest):
        states, params = rest[:n_states], rest[n_states:]
        inp = x if lengths is None else pack_padded_sequence(x, torch.tensor(lengths),
                                                             enforce_sorted=False)
        out, hn = torch.func.functional_call(layer, dict(zip(names, params, strict=True)),
                                             (inp, tuple(states) if lstm else states[0]))
        out = out.data if lengths is not None else out
        return (out, *hn) if lstm else (out, hn)
    return f


@pytest.mark.parametrize("num_layers,bidirectional,lengths", SHAPES)
@pytest.mark.parametrize("kind", LAYERS)
def test_layer_gradgradcheck(kind, num_layers, bidirectional, lengths):
    cls, extra = LAYERS[kind]
    layer = getattr(rnnlab, cls)(2, 2, num_layers, bidirectional=bidirectional, dtype=D64,
                                 backend="engine", **extra)
    lstm = cls == "LSTM"
    LD = num_layers * (2 if bidirectional else 1)
    R = extra.get("proj_size") or 2
    x = torch.randn(3, 2, 2, dtype=D64, requires_grad=True)
    states = [torch.randn(LD, 2, R, dtype=D64, requires_grad=True)]
    if lstm:
        states.append(torch.randn(LD, 2, 2, dtype=D64, requires_grad=True))
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    f = layer_function(layer, lengths, lstm)
    assert torch.autograd.gradgradcheck(f, (x, *states, *params))


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cell_gradgradcheck(kind):
    cls = {"rnn_tanh": "RNNCell", "rnn_relu": "RNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}[kind]
    extra = {"nonlinearity": "relu"} if kind == "rnn_relu" else {}
    cell = getattr(rnnlab, cls)(2, 3, dtype=D64, **extra)
    names = [n for n, _ in cell.named_parameters()]
    n_states = 2 if cls == "LSTMCell" else 1
    x = torch.randn(2, 2, dtype=D64, requires_grad=True)
    states = [torch.randn(2, 3, dtype=D64, requires_grad=True) for _ in range(n_states)]

    def f(x, *rest):
        hx = tuple(rest[:n_states]) if n_states == 2 else rest[0]
        return torch.func.functional_call(cell, dict(zip(names, rest[n_states:], strict=True)),
                                          (x, hx))

    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradgradcheck(f, (x, *states, *params))


def gradient_penalty(m, x, lengths):
    """‖∂(Σ output)/∂x‖² and its gradient with respect to x and every parameter."""
    xi = x.clone().requires_grad_()
    inp = xi if lengths is None else pack_padded_sequence(xi, torch.tensor(lengths),
                                                          enforce_sorted=False)
    out = m(inp)[0]
    out = out.data if lengths is not None else out
    (g,) = torch.autograd.grad((out * out).sum(), xi, create_graph=True)
    penalty = (g * g).sum()
    return [penalty, g, *torch.autograd.grad(penalty, [xi, *m.parameters()])]


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["dense", "packed"])
@pytest.mark.parametrize("kind", LAYERS)
def test_gradient_penalty_matches_torch(kind, lengths):
    ours, ref = pair(kind, 3, 4)
    x = torch.randn(5, 3, 3, dtype=D64)
    for a, b in zip(gradient_penalty(ours, x, lengths), gradient_penalty(ref, x, lengths),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_differentiable_backward_float32_like_torchs_test():
    # torch's test_LSTM_differentiable_backward_using_oneDNN, engine against torch's kernel
    ref = nn.LSTM(3, 3, 4, batch_first=True)
    ours = rnnlab.LSTM(3, 3, 4, batch_first=True, backend="engine")
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(5, 6, 3)
    results = []
    for m in (ref, ours):
        xi = x.clone().requires_grad_()
        out = m(xi)[0]
        (d,) = torch.autograd.grad(out, xi, torch.ones_like(out), create_graph=True)
        d.sum().backward()
        results.append((d, xi.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_first_order_backward_builds_no_graph():
    m = rnnlab.GRU(3, 4, backend="engine")
    x = torch.randn(5, 2, 3, requires_grad=True)
    (g,) = torch.autograd.grad(m(x)[0].sum(), x)  # the hand-written loop, no replay
    assert not g.requires_grad
    (g2,) = torch.autograd.grad(m(x)[0].sum(), x, create_graph=True)  # the replay
    assert g2.requires_grad
    torch.testing.assert_close(g, g2.detach())


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["dense", "packed"])
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru"])
def test_trace_records_the_create_graph_backward(kind, lengths):
    """A backward with create_graph=True (the replay) records what the first-order one does."""
    cls, extra = LAYERS[kind]
    m = getattr(rnnlab, cls)(3, 4, 2, bidirectional=True, dtype=D64, **extra)
    x = torch.randn(5, 3, 3, dtype=D64)
    inp = x if lengths is None else pack_padded_sequence(x, torch.tensor(lengths),
                                                         enforce_sorted=False)
    records = []
    for create_graph in (False, True):
        with rnnlab.trace(m) as tr:
            out = m(inp)[0]
            out = out.data if lengths is not None else out
            (out * out).sum().backward(create_graph=create_graph)
        records.append((tr.grad_h, tr.grad_c, tr.gates))
        m.zero_grad(set_to_none=True)
    (h1, c1, g1), (h2, c2, g2) = records
    torch.testing.assert_close(h2, h1, rtol=1e-10, atol=1e-12)
    if c1 is not None:
        torch.testing.assert_close(c2, c1, rtol=1e-10, atol=1e-12)
    assert g1.keys() == g2.keys()


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm_proj", "gru"])
def test_batched_vjps_like_torch(kind):
    """vmap over the backward (autograd.grad(is_grads_batched=True), which
    jacobian(vectorize=True) and gradcheck's batched check use) goes through the replay."""
    cls, extra = LAYERS[kind]
    ours, ref = pair(kind, 2, 3)
    x = torch.randn(4, 2, 2, dtype=D64)
    jac = [torch.autograd.functional.jacobian(lambda v, m=m: m(v)[0], x, vectorize=True)
           for m in (ours, ref)]
    torch.testing.assert_close(jac[0], jac[1], rtol=1e-10, atol=1e-12)
    layer_f = layer_function(ours, [4, 3], cls == "LSTM")
    xi = x.clone().requires_grad_()
    R = extra.get("proj_size") or 3
    states = [torch.randn(4, 2, R, dtype=D64, requires_grad=True)]
    if cls == "LSTM":
        states.append(torch.randn(4, 2, 3, dtype=D64, requires_grad=True))
    params = [p.detach().clone().requires_grad_() for p in ours.parameters()]
    assert torch.autograd.gradcheck(layer_f, (xi, *states, *params), check_batched_grad=True)
