"""rnnlab.LSTM with proj_size (h_t = W_hr (o ⊙ tanh(c_t))) against torch.nn.LSTM(proj_size=...)
with copied weights, on both backends; its parameters, init, errors, trace and pickling."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from rnnlab import equations

D64 = torch.float64
I, H, P, T, B = 3, 5, 2, 6, 4
LENGTHS = [6, 2, 5, 1]  # unsorted
# torch's fused CPU LSTM says so when it leaves oneDNN for its native kernel (also for torch.nn)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")


def make_pair(backend="engine", dtype=D64, **kw):
    ref = nn.LSTM(I, H, proj_size=P, dtype=dtype, **kw)
    ours = rnnlab.LSTM(I, H, proj_size=P, dtype=dtype, backend=backend, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def run(m, x, hx, lengths, batch_first):
    """Forward and backward of a fixed random linear loss of (output, h_n, c_n): the outputs and
    the gradients of x, h_0, c_0 and every parameter."""
    xi = x.clone().requires_grad_()
    hi = tuple(s.clone().requires_grad_() for s in hx)
    inp = xi
    if lengths is not None:
        inp = pack_padded_sequence(xi, torch.tensor(lengths), batch_first=batch_first,
                                   enforce_sorted=False)
    out, (h, c) = m(inp, hi)
    out = out.data if lengths is not None else out
    g = torch.Generator().manual_seed(7)
    loss = sum((v * torch.randn(v.shape, generator=g, dtype=v.dtype)).sum() for v in (out, h, c))
    return [out, h, c, *torch.autograd.grad(loss, [xi, *hi, *m.parameters()])]


GRID = list(itertools.product((1, 2), (False, True), (False, True), (None, LENGTHS),
                              (True, False)))


@pytest.mark.parametrize("backend", ["engine", "fused"])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths,bias", GRID)
def test_proj_lstm_matches_torch(backend, num_layers, bidirectional, batch_first, lengths, bias):
    ours, ref = make_pair(backend, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first, bias=bias)
    g = torch.Generator().manual_seed(1)
    LD = num_layers * (2 if bidirectional else 1)
    x = torch.randn(*((B, T) if batch_first else (T, B)), I, generator=g, dtype=D64)
    hx = (torch.randn(LD, B, P, generator=g, dtype=D64),
          torch.randn(LD, B, H, generator=g, dtype=D64))
    got, want = run(ours, x, hx, lengths, batch_first), run(ref, x, hx, lengths, batch_first)
    assert [v.shape for v in got] == [v.shape for v in want]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["dense", "packed"])
def test_proj_lstm_float32_engine_matches_torch(lengths):
    # float32 runs the engine's GEMMs on oneDNN; widths on both sides of gemm.SMALL_WIDTH
    for hidden, proj in ((5, 2), (160, 130)):
        ref = nn.LSTM(I, hidden, 2, bidirectional=True, proj_size=proj)
        ours = rnnlab.LSTM(I, hidden, 2, bidirectional=True, proj_size=proj, backend="engine")
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(T, B, I)
        hx = (torch.randn(4, B, proj), torch.randn(4, B, hidden))
        for a, b in zip(run(ours, x, hx, lengths, False), run(ref, x, hx, lengths, False),
                        strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)


def test_default_state_and_unbatched_input_like_torch():
    ours, ref = make_pair(num_layers=2, bidirectional=True)
    x = torch.randn(T, I, dtype=D64)  # one sequence: h_n (L·D, P), c_n (L·D, H)
    for a, b in zip((ours(x)[0], *ours(x)[1]), (ref(x)[0], *ref(x)[1]), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert ours(x)[1][0].shape == (4, P) and ours(x)[1][1].shape == (4, H)


def test_gradcheck_through_the_projection():
    m = rnnlab.LSTM(2, 3, proj_size=2, bidirectional=True, dtype=D64, backend="engine")
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=D64, requires_grad=True)
    h0 = torch.randn(2, 2, 2, dtype=D64, requires_grad=True)
    c0 = torch.randn(2, 2, 3, dtype=D64, requires_grad=True)

    def f(x, h0, c0, *params):
        packed = pack_padded_sequence(x, torch.tensor([4, 2]))
        out, (h, c) = torch.func.functional_call(m, dict(zip(names, params, strict=True)),
                                                 (packed, (h0, c0)))
        return out.data, h, c

    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    assert torch.autograd.gradcheck(f, (x, h0, c0, *params))


# -- parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_parameters_names_shapes_order_like_torch(bias):
    kw = dict(num_layers=2, bidirectional=True, bias=bias, proj_size=P)
    ours, ref = rnnlab.LSTM(I, H, **kw), nn.LSTM(I, H, **kw)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in ref.named_parameters()]
    assert [w.shape for w in ours._flat_weights] == [w.shape for w in ref._flat_weights]
    assert [[w.shape for w in g] for g in ours.all_weights] == [
        [w.shape for w in g] for g in ref.all_weights]
    ref.load_state_dict(ours.state_dict())  # both ways, strictly
    ours.load_state_dict(nn.LSTM(I, H, **kw).state_dict())
    assert len(ours.weights(1, 1)) == 5 and ours.weights(1, 1)[4] is ours.weight_hr_l1_reverse
    assert repr(ours) == repr(ref) == "LSTM(3, 5, proj_size=2, num_layers=2, " + (
        "bidirectional=True)" if bias else "bias=False, bidirectional=True)")


def test_projection_init_is_torchs():
    # every parameter ~ U(−1/√H, 1/√H), W_hr included
    m = rnnlab.LSTM(4, 64, proj_size=40, dtype=D64)
    k = 1 / math.sqrt(64)
    w = m.weight_hr_l0
    assert w.abs().max() <= k and w.abs().max() > 0.95 * k
    assert abs(w.mean().item()) < 0.1 * k and abs(w.std().item() - k / math.sqrt(3)) < 0.1 * k


def test_orthogonal_recurrent_init_with_projection():
    m = rnnlab.LSTM(3, 6, proj_size=4, recurrent_init="orthogonal", spectral_radius=0.5,
                    dtype=D64)
    for block in m.weight_hh_l0.split(6, 0):  # (H, P) blocks: 0.5 · semi-orthogonal
        torch.testing.assert_close(block.T @ block, 0.25 * torch.eye(4, dtype=D64))
    with pytest.raises(ValueError, match="recurrent_init='orthogonal'"):
        rnnlab.LSTM(3, 6, proj_size=4, spectral_radius=0.5)  # H×P blocks have no spectrum


@pytest.mark.filterwarnings("ignore:.*weight_norm` is deprecated")
def test_weight_norm_on_the_projection_like_torch():
    # torch's test_rnn_weight_norm: the reparametrised weight leaves the Parameters and returns
    for name, count in (("weight_ih_l0", 4), ("weight_hr_l0", 5)):
        m = rnnlab.LSTM(8, 8, proj_size=4 if name == "weight_hr_l0" else 0)
        m = torch.nn.utils.weight_norm(m, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == count - 1
        m(torch.randn(3, 2, 8))  # runs on the reparametrised weight
        m = torch.nn.utils.remove_weight_norm(m, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == count
        assert name in dict(m.named_parameters())


def test_pickled_before_proj_size_existed_still_loads():
    # torch's test_save_lstm_compatibility: a module state without proj_size means 0
    m = rnnlab.LSTM(2, 3)
    x = torch.randn(5, 4, 2)
    state = dict(m.__dict__)
    del state["proj_size"]
    fresh = rnnlab.LSTM(2, 3)
    fresh.__setstate__(state)
    assert fresh.proj_size == 0
    torch.testing.assert_close(fresh(x)[0], m(x)[0])
    buf = io.BytesIO()
    torch.save(rnnlab.LSTM(2, 3, proj_size=1), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=False).proj_size == 1


# -- telemetry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["dense", "packed"])
def test_trace_grad_h_is_the_gradient_reaching_the_projected_state(lengths):
    """grad_h[k, t] = batch mean of ‖∂L/∂h_t‖ for the projected h_t (size P), and grad_c that of
    c_t, as autograd gives with retain_grad on the reference equations' states. (With packed
    input the reference's retained c_t is the carried state, which h_t does not read: its grad
    lacks the h_t path, so grad_c is compared on dense input only.)"""
    m = rnnlab.LSTM(I, H, 2, bidirectional=True, proj_size=P, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    inp = x if lengths is None else pack_padded_sequence(x, torch.tensor(lengths),
                                                         enforce_sorted=False)
    w = torch.randn(T, B, 2 * P, dtype=D64)

    def loss(out):
        if lengths is not None:
            out = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)[0]
        return (out * w).sum()

    with rnnlab.trace(m) as tr:
        loss(m(inp)[0]).backward()
    ref = equations.unroll(m, inp, retain_grad=True)
    loss(ref.output).backward()
    active = torch.arange(T)[:, None] < torch.tensor(lengths or [T] * B)[None, :]  # (T, B)
    for k, s in enumerate(ref.steps):
        for field, states in (("grad_h", s.h), ("grad_c", s.c))[: 2 if lengths is None else 1]:
            got = getattr(tr, field)[k]
            for step, v in enumerate(states):
                t = T - 1 - step if s.direction else step
                norms = v.grad.norm(dim=1)[active[t]]
                torch.testing.assert_close(got[t], norms.mean(), rtol=1e-10, atol=1e-12)
