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
     r"^RNN input dtype \(torch.float64\) does not match weight dtype \(torch.float32\)\. "
     r"Convert input: input\.to\(torch.float32\), or convert model: model\.to\(torch.float64\)"),
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
    # PyTorch's module database (test_modules.py) checks these
    ("bias int", lambda M, c: M(3, 5, bias=1), r"bias should be of type bool, got: int"),
    ("bias str", lambda M, c: M(3, 5, bias="True"), r"bias should be of type bool, got: str"),
    ("batch_first int", lambda M, c: M(3, 5, batch_first=0),
     r"batch_first should be of type bool, got: int"),
    ("input_size str", lambda M, c: M("10", 5), r"input_size should be of type int, got: str"),
    ("input_size < 0", lambda M, c: M(-1, 5), r"input_size must be greater than zero"),
    ("parameters on another device", lambda M, c: M(3, 5, device="meta")(x),
     r"^Input and parameter tensors are not at the same device, found input tensor at cpu and "
     r"parameter tensor at meta"),
    ("state on another device", lambda M, c: M(3, 5)(x, state(c, torch.zeros(1, 2, 5,
                                                                          device="meta"))),
     r"^Input and hidden tensors are not at the same device, found input tensor at cpu and "
     r"hidden tensor at meta"),
]


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("mistake,match", [pytest.param(f, m, id=i) for i, f, m in LAYER_MISTAKES])
def test_layer_mistake_raises_like_torch(cls, mistake, match):
    with pytest.raises(Exception) as ref:
        mistake(make("torch", cls), cls)
    with pytest.raises(ref.type, match=match):
        mistake(make("rnnlab", cls), cls)


def test_lstm_state_dims_message_is_torchs():
    h = torch.zeros(1, 2, 5)
    for args, match in (((x, (h, torch.zeros(2, 5))), r"^For batched 3-D input, hx and cx should "
                         r"also be 3-D but got \(3-D, 2-D\) tensors"),
                        ((x_unbatched, (h, h)), r"^For unbatched 2-D input, hx and cx should also "
                         r"be 2-D but got \(3-D, 3-D\) tensors")):
        with pytest.raises(RuntimeError, match=match):
            nn.LSTM(3, 5)(*args)
        with pytest.raises(RuntimeError, match=match):
            rnnlab.LSTM(3, 5, backend="engine")(*args)


# -- proj_size: (constructor args, torch's exception type and words) ---------------------------
PROJ_MISTAKES = [
    ("RNN", {"proj_size": 2}, ValueError,
     r"proj_size argument is only supported for LSTM, not RNN or GRU"),
    ("GRU", {"proj_size": 0}, ValueError,
     r"proj_size argument is only supported for LSTM, not RNN or GRU"),
    ("LSTM", {"proj_size": 5}, ValueError, r"proj_size has to be smaller than hidden_size"),
    ("LSTM", {"proj_size": 7}, ValueError, r"proj_size has to be smaller than hidden_size"),
    ("LSTM", {"proj_size": -1}, ValueError,
     r"proj_size should be a positive integer or zero to disable projections"),
    ("LSTM", {"proj_size": 2.5}, TypeError, r"proj_size should be of type int, got: float"),
]


@pytest.mark.parametrize("cls,kw,error,match", PROJ_MISTAKES)
def test_proj_size_mistakes_raise_like_torch(cls, kw, error, match):
    with pytest.raises(error) as ref:
        getattr(nn, cls)(3, 5, **kw)
    if error is ValueError:  # torch's own words (its TypeError comes from torch.empty)
        assert ref.match(match)
    with pytest.raises(error, match=match):
        getattr(rnnlab, cls)(3, 5, **kw)


@pytest.mark.parametrize("which", ["h", "c"])
def test_proj_lstm_state_sizes_like_torch(which):
    lstm = {lib: M(3, 5, 2, proj_size=2) for lib, M in (("torch", nn.LSTM),
                                                         ("rnnlab", rnnlab.LSTM))}
    good = {"h": torch.zeros(2, 2, 2), "c": torch.zeros(2, 2, 5)}
    bad = dict(good, **{which: torch.zeros(2, 2, 5 if which == "h" else 2)})
    match = (r"Expected hidden\[0\] size \(2, 2, 2\), got \[2, 2, 5\]" if which == "h" else
             r"Expected hidden\[1\] size \(2, 2, 5\), got \[2, 2, 2\]")
    for m in lstm.values():
        with pytest.raises(RuntimeError, match=match):
            m(x, (bad["h"], bad["c"]))


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
], ids=["backend", "recurrent_init", "radius 0", "radius < 0", "radius str",
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
     r"^hidden0 has inconsistent hidden_size: got 4, expected 5$"),
    ("wrong batch", lambda C, c: C(3, 5)(torch.randn(2, 3), cell_state(c, torch.zeros(3, 5))),
     r"^Input batch size 2 doesn't match hidden0 batch size 3$"),
    ("2-D state, unbatched input", lambda C, c: C(3, 5)(
        torch.randn(3), cell_state(c, torch.zeros(1, 5))),
     r"^hidden0 has inconsistent hidden_size: got 1, expected 5$"),
    ("1-D state, batched input", lambda C, c: C(3, 5)(
        torch.randn(2, 3), cell_state(c, torch.zeros(5))),
     r"^Input batch size 2 doesn't match hidden0 batch size 5$"),
    ("4-D state", lambda C, c: C(3, 5)(torch.randn(2, 3), cell_state(c, torch.zeros(2, 1, 1, 5))),
     r"Expected (hidden|hx\[0\]) to be 1D or 2D, got 4D instead"),
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
    with pytest.raises(RuntimeError) as ref:  # torch: "lstm_cell expects two hidden states"
        nn.LSTMCell(3, 5)(torch.randn(2, 3), (h,))
    with pytest.raises(ref.type, match="two hidden states"):
        rnnlab.LSTMCell(3, 5)(torch.randn(2, 3), (h,))


@pytest.mark.parametrize("which", [0, 1])
def test_lstm_cell_second_state_checked_like_torch(which):
    good, bad = torch.zeros(3, 20), torch.zeros(5, 20)
    hx = (bad, good) if which == 0 else (good, bad)
    match = rf"^Input batch size 3 doesn't match hidden{which} batch size 5$"
    for C in (nn.LSTMCell, rnnlab.LSTMCell):
        with pytest.raises(RuntimeError, match=match):
            C(10, 20)(torch.randn(3, 10), hx)
    hx = tuple(torch.zeros(3, 1, 1, 20) if i == which else good for i in range(2))
    for C in (nn.LSTMCell, rnnlab.LSTMCell):
        with pytest.raises(ValueError, match=rf"LSTMCell: Expected hx\[{which}\] to be 1D or 2D"):
            C(10, 20)(torch.randn(3, 10), hx)


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_sizes_must_be_non_negative_ints(cls):
    # torch builds cells of size 0 (see test_empty.py); a negative size fails in torch.empty
    # (RuntimeError), rnnlab refuses it by name
    getattr(rnnlab, cls)(3, 0)
    getattr(rnnlab, cls)(0, 3)
    with pytest.raises(ValueError, match="hidden_size must not be negative"):
        getattr(rnnlab, cls)(3, -1)
    with pytest.raises(ValueError, match="input_size must not be negative"):
        getattr(rnnlab, cls)(-2, 3)
    with pytest.raises(TypeError, match="hidden_size should be of type int"):
        getattr(rnnlab, cls)(3, 2.0)
