"""rnnlab.RNN / LSTM / GRU against independent references: torch.nn with copied weights,
torch.autograd.gradcheck, and a closed form of backpropagation through time.

Every layer under test runs rnnlab's own explicit BPTT engine (``backend="engine"``).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab

# every test runs on both engine paths: the Python loops and the native kernels
pytestmark = pytest.mark.usefixtures("kernels")

# name -> (class name, extra constructor arguments)
MODES = {
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
}
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
I, H = 3, 5  # input and hidden size of the grid
T, B = 7, 4  # steps and batch of the grid
LENGTHS = {"sorted": [7, 6, 3, 1], "unsorted": [3, 7, 1, 6]}


def make_pair(mode, input_size=I, hidden_size=H, dtype=torch.float64, device=None, **kw):
    """(rnnlab layer on the engine, torch.nn layer) holding the same weights, copied from torch."""
    cls, extra = MODES[mode]
    ref = getattr(nn, cls)(input_size, hidden_size, dtype=dtype, device=device, **extra, **kw)
    ours = getattr(rnnlab, cls)(input_size, hidden_size, dtype=dtype, device=device,
                                backend="engine", **extra, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def run_both(ours, ref, *, steps=T, batch=B, lengths=None, enforce_sorted=True, init_state=False,
             seed=1):
    """Run both layers forward and backward on the same input (dense, or packed when ``lengths``
    is given), the same optional initial state and the same random linear loss of every output.

    Returns [(what, rnnlab tensor, torch tensor)]: outputs, final states, and the gradients of
    the input, of the initial state and of every parameter.
    """
    p = next(ref.parameters())
    dtype, device = p.dtype, p.device
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=dtype).to(device)
    D = 2 if ref.bidirectional else 1
    lstm = isinstance(ref, nn.LSTM)
    x = rand(*((batch, steps) if ref.batch_first else (steps, batch)), ref.input_size)
    state = None
    if init_state:
        shape = (ref.num_layers * D, batch, ref.hidden_size)
        state = (rand(*shape), rand(*shape)) if lstm else (rand(*shape),)

    got = {}
    for who, layer in (("ours", ours), ("ref", ref)):
        layer.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        si = None if state is None else tuple(s.clone().requires_grad_() for s in state)
        inp = xi
        if lengths is not None:
            inp = pack_padded_sequence(xi, torch.tensor(lengths), batch_first=ref.batch_first,
                                       enforce_sorted=enforce_sorted)
        hx = None if si is None else (si if lstm else si[0])
        out, hn = layer(inp, hx)
        finals = hn if lstm else (hn,)
        if lengths is not None:
            assert isinstance(out, PackedSequence)
            got[who, "batch_sizes"] = out.batch_sizes
            out = out.data
        w = torch.Generator().manual_seed(seed + 1)  # the same loss weights for both
        loss = sum((t * torch.randn(t.shape, generator=w, dtype=dtype).to(device)).sum()
                   for t in (out, *finals))
        loss.backward()
        got[who, "output"] = out.detach()
        for i, f in enumerate(finals):
            got[who, f"final_state[{i}]"] = f.detach()
        got[who, "grad input"] = xi.grad
        for i, s in enumerate(si or ()):
            got[who, f"grad initial_state[{i}]"] = s.grad
        for name, prm in layer.named_parameters():
            got[who, f"grad {name}"] = prm.grad
    keys = [k for who, k in got if who == "ref"]
    assert keys == [k for who, k in got if who == "ours"]
    return [(k, got["ours", k], got["ref", k]) for k in keys]


def assert_close(pairs, tol):
    for what, a, b in pairs:
        assert b is not None and a is not None, f"{what}: missing ({a is None=}, {b is None=})"
        assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != torch's {tuple(b.shape)}"
        assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != torch's {b.dtype}"
        diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        assert diff <= tol, f"{what}: max |rnnlab − torch| = {diff:.3g} > {tol:g}"


# -- the parity grid --------------------------------------------------------------------------
GRID = [
    pytest.param(*cfg, id="-".join((cfg[0], f"L{cfg[1]}", "bi" if cfg[2] else "uni",
                                    "bf" if cfg[3] else "tm", cfg[4], "h0" if cfg[5] else "noh0",
                                    "bias" if cfg[6] else "nobias")))
    for cfg in itertools.product(MODES, (1, 3), (False, True), (False, True),
                                 ("dense", "sorted", "unsorted"), (False, True), (True, False))
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode,num_layers,bidirectional,batch_first,packing,init_state,bias", GRID)
def test_parity_grid(mode, num_layers, bidirectional, batch_first, packing, init_state, bias,
                     dtype):
    ours, ref = make_pair(mode, dtype=dtype, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first, bias=bias)
    pairs = run_both(ours, ref, lengths=LENGTHS.get(packing),
                     enforce_sorted=packing == "sorted", init_state=init_state)
    assert_close(pairs, TOL[dtype])


# -- dropout between layers -----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_eval_mode_ignores_dropout_like_torch(mode):
    ours, ref = make_pair(mode, num_layers=3, dropout=0.5, bidirectional=True)
    ours.eval()
    ref.eval()
    assert_close(run_both(ours, ref, init_state=True), TOL[torch.float64])


@pytest.mark.parametrize("mode", MODES)
def test_train_mode_without_dropout_equals_torch(mode):
    ours, ref = make_pair(mode, num_layers=3, dropout=0.0)
    assert ours.training and ref.training
    assert_close(run_both(ours, ref, init_state=True), TOL[torch.float64])


@pytest.mark.parametrize("mode", MODES)
def test_dropout_one_zeroes_every_layer_but_the_last_like_torch(mode):
    # p = 1 is deterministic: the input of layers 2 and 3 is all zero, the last output is not
    ours, ref = make_pair(mode, num_layers=3, dropout=1.0, bidirectional=True)
    assert_close(run_both(ours, ref, init_state=True), TOL[torch.float64])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_train_mode_dropout_masks_match_torch_from_the_same_seed(mode, batch_first):
    # torch's CPU kernel draws one mask per layer boundary on the (T, B, D·H) output, in layer
    # order, from the global generator; rnnlab does the same, so the same seed gives the same
    # masks. This pins where the dropout is applied, and its scaling 1/(1 − p).
    ours, ref = make_pair(mode, num_layers=3, dropout=0.5, bidirectional=True,
                          batch_first=batch_first)
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(5)
    a = ours(x)[0]
    torch.manual_seed(5)
    b = ref(x)[0]
    assert (a - b).abs().max().item() <= TOL[torch.float64]


@pytest.mark.parametrize("mode", MODES)
def test_train_mode_dropout_differs_from_eval(mode):
    ours, _ = make_pair(mode, num_layers=3, dropout=0.5)
    x = torch.randn(T, B, I, dtype=torch.float64)
    train_out = ours(x)[0]
    ours.eval()
    eval_out = ours(x)[0]
    assert not torch.allclose(train_out, eval_out)


# -- state dicts, parameter names and counts ------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_both_ways(mode, num_layers, bidirectional, bias):
    cls, extra = MODES[mode]
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias, dtype=torch.float64)
    ours = getattr(rnnlab, cls)(I, H, backend="engine", **extra, **kw)
    ref = getattr(nn, cls)(I, H, **extra, **kw)
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert [v.shape for v in ours_sd.values()] == [v.shape for v in ref_sd.values()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(ours) == count(ref)

    # rnnlab -> torch: torch then computes what rnnlab computes
    ref.load_state_dict(ours_sd)
    assert_close(run_both(ours, ref, init_state=True), TOL[torch.float64])
    # torch -> rnnlab, with fresh torch weights
    fresh = getattr(nn, cls)(I, H, **extra, **kw)
    ours.load_state_dict(fresh.state_dict())
    for (n, a), (_, b) in zip(ours.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(a, b), n
    assert_close(run_both(ours, fresh, init_state=True), TOL[torch.float64])


# -- unbatched input ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_state", [False, True], ids=["noh0", "h0"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_unbatched_input_matches_torch(mode, with_state, batch_first):
    # an unbatched input is (T, I) whatever batch_first says
    ours, ref = make_pair(mode, num_layers=2, bidirectional=True, batch_first=batch_first)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, I, generator=g, dtype=torch.float64)
    lstm = mode == "lstm"
    state = tuple(torch.randn(4, H, generator=g, dtype=torch.float64) for _ in range(1 + lstm))
    got = []
    for layer in (ours, ref):
        xi = x.clone().requires_grad_()
        si = tuple(s.clone().requires_grad_() for s in state)
        hx = (si if lstm else si[0]) if with_state else None
        out, hn = layer(xi, hx)
        finals = hn if lstm else (hn,)
        assert out.shape == (T, 2 * H) and all(f.shape == (4, H) for f in finals)
        (out.sum() + sum((f * f).sum() for f in finals)).backward()
        grads = [xi.grad] + ([s.grad for s in si] if with_state else [])
        got.append([out, *finals, *grads, *(p.grad for p in layer.parameters())])
    for a, b in zip(*got, strict=True):
        assert (a - b).abs().max().item() <= TOL[torch.float64]


# -- gradcheck: the hand-written backward against finite differences ------------------------
GRADCHECK = [
    pytest.param(mode, L, bi, lengths, id=f"{mode}-L{L}-{'bi' if bi else 'uni'}"
                 + ("-packed" if lengths else ""))
    for mode in MODES
    for L, bi, lengths in ((1, False, None), (2, True, None), (1, True, [2, 4, 1]))
]


@pytest.mark.parametrize("mode,num_layers,bidirectional,lengths", GRADCHECK)
def test_gradcheck(mode, num_layers, bidirectional, lengths):
    """∂(output, h_n, c_n)/∂(x, h0, c0, every weight) by the engine's BPTT = finite differences."""
    cls, extra = MODES[mode]
    hidden = 3 if num_layers == 1 else 2  # finite differences cost one forward per number
    layer = getattr(rnnlab, cls)(2, hidden, num_layers, bidirectional=bidirectional,
                                 dtype=torch.float64, backend="engine", **extra)
    names = [n for n, _ in layer.named_parameters()]
    lstm = mode == "lstm"
    steps, batch = 4, 3
    x = torch.randn(steps, batch, 2, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(layer.num_layers * layer.num_directions, batch, hidden,
                          dtype=torch.float64, requires_grad=True) for _ in range(1 + lstm)]

    def f(x, *rest):
        states, params = rest[: 1 + lstm], rest[1 + lstm :]
        inp = x if lengths is None else pack_padded_sequence(x, torch.tensor(lengths),
                                                             enforce_sorted=False)
        hx = tuple(states) if lstm else states[0]
        out, hn = torch.func.functional_call(layer, dict(zip(names, params, strict=True)),
                                             (inp, hx))
        out = out.data if lengths is not None else out
        return (out, *hn) if lstm else (out, hn)

    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(f, (x, *states, *params))


# -- closed form ----------------------------------------------------------------------------
@pytest.mark.parametrize("r", [0.5, 0.9, 1.0, 1.1])
@pytest.mark.parametrize("steps", [1, 5, 20])
def test_closed_form_gradient_through_orthogonal_recurrence(r, steps):
    """W_hh = r·Q (Q orthogonal), W_ih = 0, b = 0, h_0 = 0: every h_t = 0, tanh'(0) = 1, so
    ∂L/∂h_{t-1} = W_hhᵀ ∂L/∂h_t exactly and ‖∂L/∂h_0‖ = r^T ‖∂L/∂h_T‖ for L = ⟨v, h_T⟩."""
    hidden = 6
    layer = rnnlab.RNN(4, hidden, dtype=torch.float64, backend="engine")
    q, _ = torch.linalg.qr(torch.randn(hidden, hidden, dtype=torch.float64))
    with torch.no_grad():
        layer.weight_ih_l0.zero_()
        layer.bias_ih_l0.zero_()
        layer.bias_hh_l0.zero_()
        layer.weight_hh_l0.copy_(r * q)
    x = torch.randn(steps, 2, 4, dtype=torch.float64)
    h0 = torch.zeros(1, 2, hidden, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, hidden, dtype=torch.float64)
    out, h_T = layer(x, h0)
    assert torch.equal(h_T, torch.zeros_like(h_T))
    (v * h_T[0]).sum().backward()  # ∂L/∂h_T = v
    got = torch.linalg.vector_norm(h0.grad[0], dim=1)
    want = r**steps * torch.linalg.vector_norm(v, dim=1)
    assert torch.allclose(got, want, rtol=1e-10, atol=0)
    # and the direction: ∂L/∂h_0 = (W_hhᵀ)^T v
    expect = v @ torch.linalg.matrix_power(r * q, steps)
    assert torch.allclose(h0.grad[0], expect, rtol=1e-10, atol=1e-14)


# -- property tests -------------------------------------------------------------------------
@st.composite
def configs(draw):
    steps = draw(st.integers(1, 6))
    batch = draw(st.integers(1, 4))
    packing = draw(st.sampled_from(["dense", "sorted", "unsorted"]))
    lengths = None
    if packing != "dense":
        lengths = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
        lengths[draw(st.integers(0, batch - 1))] = steps  # pack_padded keeps T = max length
        if packing == "sorted":
            lengths.sort(reverse=True)
    return dict(
        mode=draw(st.sampled_from(list(MODES))),
        input_size=draw(st.integers(1, 4)),
        hidden_size=draw(st.integers(1, 4)),
        num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bias=draw(st.booleans()),
        init_state=draw(st.booleans()),
        steps=steps, batch=batch, lengths=lengths, enforce_sorted=packing == "sorted",
    )


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cfg=configs(), seed=st.integers(0, 2**16))
def test_property_parity_with_torch(cfg, seed):
    cfg = dict(cfg)
    run = {k: cfg.pop(k) for k in ("steps", "batch", "lengths", "enforce_sorted", "init_state")}
    torch.manual_seed(seed)
    ours, ref = make_pair(cfg.pop("mode"), **cfg)
    assert_close(run_both(ours, ref, seed=seed, **run), TOL[torch.float64])


# -- repr -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", [
    {},
    {"num_layers": 2, "dropout": 0.5, "bidirectional": True, "batch_first": True, "bias": False},
    {"num_layers": 3, "dropout": 0.25},
], ids=["default", "all", "dropout"])
def test_repr_reads_like_torch(cls, kw):
    assert repr(getattr(rnnlab, cls)(3, 5, backend="engine", **kw)) == repr(
        getattr(nn, cls)(3, 5, **kw))


def test_positional_arguments_in_torchs_order():
    args = {"RNN": (3, 5, 2, "relu", False, True, 0.5, True),  # ..., nonlinearity, bias, ...
            "LSTM": (3, 5, 2, False, True, 0.5, True, 0),  # ..., bias, ..., proj_size
            "GRU": (3, 5, 2, False, True, 0.5, True)}
    for cls, a in args.items():
        ours, ref = getattr(rnnlab, cls)(*a), getattr(nn, cls)(*a)
        for attr in ("num_layers", "bias", "batch_first", "dropout", "bidirectional"):
            assert getattr(ours, attr) == getattr(ref, attr), (cls, attr)
    assert rnnlab.RNN(*args["RNN"]).nonlinearity == "relu"


def test_repr_shows_rnnlab_extras():
    r = repr(rnnlab.LSTM(3, 5, forget_bias=1.0, recurrent_init="orthogonal", spectral_radius=0.9))
    assert r == ("LSTM(3, 5, forget_bias=1.0, recurrent_init='orthogonal', "
                 "spectral_radius=0.9)")
    assert repr(rnnlab.RNN(3, 5, nonlinearity="relu")) == "RNN(3, 5, nonlinearity='relu')"


# -- CUDA -----------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("packing", ["dense", "unsorted"])
def test_parity_on_cuda(mode, packing, dtype):
    ours, ref = make_pair(mode, dtype=dtype, device="cuda", num_layers=2, bidirectional=True)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # full float32 in cuDNN
        pairs = run_both(ours, ref, lengths=LENGTHS.get(packing), enforce_sorted=False,
                         init_state=True)
    assert all(a.is_cuda for _, a, _ in pairs if a.dtype != torch.int64)
    assert_close(pairs, TOL[dtype])
