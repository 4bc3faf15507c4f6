"""A user's mistakes raise clear errors, of the same exception type as torch.nn's for the same
mistake (where torch raises one on purpose)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnlab

x = torch.randn(4, 2, 3)  # (T, B, I) float32
x_unbatched = torch.randn(4, 3)  # (T, I)


def make(lib, cls):
    """A constructor of ``cls`` from torch.nn, or from rnnlab running its engine."""
    if lib == "torch":
        return getattr(nn, cls)
    return lambda *a, **kw: getattr(rnnlab, cls)(*a, backend="engine", **kw)


def state(cls, h):
    return (h, h) if cls == "LSTM" else h


# (id, mistake(M, cls) with M the constructor, rnnlab's message as a regex)
LAYER_MISTAKES = [
    ("wrong input size", lambda M, c: M(3, 5)(torch.randn(4, 2, 4)),
     r"input_size\. Expected 3, got 4"),
    ("wrong state batch", lambda M, c: M(3, 5)(x, state(c, torch.zeros(1, 3, 5))),
     r"Expected hidden(\[0\])? size \(1, 2, 5\), got \[1, 3, 5\]"),
    ("wrong state layers", lambda M, c: M(3, 5, 2)(x, state(c, torch.zeros(1, 2, 5))),
     r"Expected hidden(\[0\])? size \(2, 2, 5\), got \[1, 2, 5\]"),
    ("wrong state directions", lambda M, c: M(3, 5, bidirectional=True)(
        x, state(c, torch.zeros(1, 2, 5))), r"size \(2, 2, 5\)"),
    ("2-D state for batched input", lambda M, c: M(3, 5)(x, state(c, torch.zeros(2, 5))),
     r"For batched 3-D input, hx.* should also be 3-D"),
    ("3-D state for unbatched input", lambda M, c: M(3, 5)(
        x_unbatched, state(c, torch.zeros(1, 1, 5))), r"For unbatched 2-D input, hx.* 2-D"),
    ("1-D input", lambda M, c: M(3, 5)(torch.randn(3)), r"Expected input to be 2D or 3D, got 1D"),
    ("4-D input", lambda M, c: M(3, 5)(torch.randn(2, 4, 2, 3)),
     r"Expected input to be 2D or 3D, got 4D"),
    ("input dtype", lambda M, c: M(3, 5)(x.double()),
     r"input dtype \(torch.float64\) does not match weight dtype \(torch.float32\)"),
    ("state dtype", lambda M, c: M(3, 5)(x, state(c, torch.zeros(1, 2, 5, dtype=torch.float64))),
     r"float"),
    ("empty sequence", lambda M, c: M(3, 5)(torch.randn(0, 2, 3)),
     r"sequence length to be larger than 0"),
    ("dropout < 0", lambda M, c: M(3, 5, 2, dropout=-0.1), r"dropout should be a number in range"),
    ("dropout > 1", lambda M, c: M(3, 5, 2, dropout=1.5), r"dropout should be a number in range"),
    ("dropout bool", lambda M, c: M(3, 5, 2, dropout=True), r"dropout should be a number in range"),
    ("dropout str", lambda M, c: M(3, 5, 2, dropout="0.5"), r"dropout should be a number in range"),
    ("hidden_size 0", lambda M, c: M(3, 0), r"hidden_size must be greater than zero"),
    ("hidden_size < 0", lambda M, c: M(3, -2), r"hidden_size must be greater than zero"),
    ("hidden_size float", lambda M, c: M(3, 5.0), r"hidden_size should be of type int, got: float"),
    ("input_size 0", lambda M, c: M(0, 5), r"input_size must be greater than zero"),
    ("input_size float", lambda M, c: M(2.5, 5), r"input_size should be of type int"),
    ("num_layers 0", lambda M, c: M(3, 5, 0), r"num_layers must be greater than zero"),
    ("num_layers float", lambda M, c: M(3, 5, 2.0), r"num_layers should be of type int"),
]


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("mistake,match", [pytest.param(f, m, id=i) for i, f, m in LAYER_MISTAKES])
def test_layer_mistake_raises_like_torch(cls, mistake, match):
    with pytest.raises(Exception) as ref:
        mistake(make("torch", cls), cls)
    with pytest.raises(ref.type, match=match):
        mistake(make("rnnlab", cls), cls)


def test_lstm_state_must_be_a_pair():
    lstm = rnnlab.LSTM(3, 5, backend="engine")
    h = torch.zeros(1, 2, 5)
    with pytest.raises(TypeError, match=r"LSTM expects hx as a tuple \(h_0, c_0\), got Tensor"):
        lstm(x, h)  # torch fails here with an IndexError from deep inside
    with pytest.raises(RuntimeError) as ref:
        nn.LSTM(3, 5)(x, (h, h, h))
    with pytest.raises(ref.type, match="two hidden states"):
        lstm(x, (h, h, h))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(1, 2, 5\), got \[1, 3"):
        lstm(x, (h, torch.zeros(1, 3, 5)))


def test_bad_nonlinearity_like_torch():
    with pytest.raises(Exception) as ref:
        nn.RNN(3, 5, nonlinearity="sigmoid")
    with pytest.raises(ref.type, match=r"Unknown nonlinearity 'sigmoid'.*'tanh' or 'relu'"):
        rnnlab.RNN(3, 5, nonlinearity="sigmoid", backend="engine")
    # torch's cell accepts it and fails at the first step; rnnlab refuses it at once
    with pytest.raises(ValueError, match=r"Unknown nonlinearity 'sigmoid'"):
        rnnlab.RNNCell(3, 5, nonlinearity="sigmoid")


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(3, 5, dropout=0.5)
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        rnnlab.GRU(3, 5, dropout=0.5, backend="engine")


@pytest.mark.parametrize("kwargs,match", [
    ({"proj_size": 2}, r"proj_size"),
    ({"backend": "gpu"}, r"Unknown backend 'gpu'"),
    ({"recurrent_init": "xavier"}, r"Unknown recurrent_init 'xavier'"),
    ({"spectral_radius": 0}, r"spectral_radius must be a positive number"),
    ({"spectral_radius": -1.0}, r"spectral_radius must be a positive number"),
    ({"spectral_radius": "1"}, r"spectral_radius must be a positive number"),
    ({"spectral_radius": True}, r"spectral_radius must be a positive number"),
    ({"spectral_radius": float("inf")}, r"spectral_radius must be a positive number"),
    ({"forget_bias": "1"}, r"forget_bias must be a finite number"),
    ({"forget_bias": True}, r"forget_bias must be a finite number"),
    ({"forget_bias": float("nan")}, r"forget_bias must be a finite number"),
], ids=["proj_size", "backend", "recurrent_init", "radius 0", "radius < 0", "radius str",
        "radius bool", "radius inf", "forget_bias str", "forget_bias bool", "forget_bias nan"])
def test_rnnlab_only_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnnlab.LSTM(3, 5, **kwargs)


def test_bool_sizes_are_refused():
    # torch.nn.LSTM(3, True) silently builds a 1-unit layer; rnnlab refuses a bool size
    with pytest.raises(TypeError, match="hidden_size should be of type int, got: bool"):
        rnnlab.LSTM(3, True)


# -- cells ------------------------------------------------------------------------------------
def cell_state(cls, h):
    return (h, h) if cls == "LSTMCell" else h


CELL_MISTAKES = [
    ("3-D input", lambda C, c: C(3, 5)(torch.randn(2, 2, 3)),
     r"Expected input to be 1D or 2D, got 3D"),
    ("wrong input size", lambda C, c: C(3, 5)(torch.randn(2, 4)),
     r"inconsistent input_size: got 4 expected 3"),
    ("wrong hidden size", lambda C, c: C(3, 5)(torch.randn(2, 3), cell_state(c, torch.zeros(2, 4))),
     r"hidden0 has inconsistent size"),
    ("wrong batch", lambda C, c: C(3, 5)(torch.randn(2, 3), cell_state(c, torch.zeros(3, 5))),
     r"hidden0 has inconsistent size: got \[3, 5\], expected \[2, 5\]"),
    ("2-D state, unbatched input", lambda C, c: C(3, 5)(
        torch.randn(3), cell_state(c, torch.zeros(1, 5))), r"hidden0 has inconsistent size"),
]


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("mistake,match", [pytest.param(f, m, id=i) for i, f, m in CELL_MISTAKES])
def test_cell_mistake_raises_like_torch(cls, mistake, match):
    with pytest.raises(Exception) as ref:
        mistake(getattr(nn, cls), cls)
    with pytest.raises(ref.type, match=match):
        mistake(getattr(rnnlab, cls), cls)


def test_lstm_cell_state_must_be_a_pair():
    h = torch.zeros(2, 5)
    with pytest.raises(Exception) as ref:
        nn.LSTMCell(3, 5)(torch.randn(2, 3), h)
    # a (2, B, H) tensor must not be taken apart as (h, c)
    for bad in (h, torch.zeros(2, 2, 5)):
        with pytest.raises(ref.type, match=r"LSTMCell expects hx as a tuple \(h, c\)"):
            rnnlab.LSTMCell(3, 5)(torch.randn(2, 3), bad)


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_sizes_must_be_positive_ints(cls):
    # torch builds an empty cell for size 0; rnnlab refuses it
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        getattr(rnnlab, cls)(3, 0)
    with pytest.raises(ValueError, match="input_size must be greater than zero"):
        getattr(rnnlab, cls)(0, 3)
    with pytest.raises(TypeError, match="hidden_size should be of type int"):
        getattr(rnnlab, cls)(3, 2.0)
