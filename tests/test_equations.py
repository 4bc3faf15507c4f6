"""rnnlab.equations, the reference: its steps and unroll against torch.nn with copied weights
(float64, to ~1e-12), against finite differences (gradcheck) and closed forms; and the fast path
(rnnlab.cells + rnnlab.engine) against it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab import equations as E

D64 = torch.float64
I, H, B, T = 3, 5, 4, 6
TORCH = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
CELL = {"RNN": nn.RNNCell, "LSTM": nn.LSTMCell, "GRU": nn.GRUCell}
KINDS = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh")]
IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def _weights(m, sfx=""):
    return tuple(getattr(m, n + sfx, None) for n in ("weight_ih", "weight_hh", "bias_ih",
                                                     "bias_hh"))


def _torch_layer(mode, nl, **kw):
    extra = {"nonlinearity": nl} if mode == "RNN" else {}
    return TORCH[mode](I, H, dtype=D64, **extra, **kw)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode,nl", KINDS, ids=IDS)
def test_step_equals_torch_cell(mode, nl, bias):
    """One step of the equations = torch.nn's cell with the same weights: values and gradients."""
    cell = CELL[mode](I, H, bias=bias, dtype=D64, **({"nonlinearity": nl} if mode == "RNN"
                                                     else {}))
    x = torch.randn(B, I, dtype=D64, requires_grad=True)
    h = torch.randn(B, H, dtype=D64, requires_grad=True)
    c = torch.randn(B, H, dtype=D64, requires_grad=True) if mode == "LSTM" else None
    w = _weights(cell)
    got_h, got_c, gates = E.step(mode, x, h, c, w, nl)
    want = cell(x, (h, c)) if mode == "LSTM" else (cell(x, h),)
    assert set(gates) == set(E.GATES[mode])
    assert (got_c is None) == (mode != "LSTM")
    got = (got_h, got_c) if mode == "LSTM" else (got_h,)
    ws = [torch.randn_like(v) for v in want]  # a loss Σ w·(h, c) with random weights
    ins = [v for v in (x, h, c, *w) if v is not None]
    grads = [torch.autograd.grad(sum((v * wi).sum() for v, wi in zip(vs, ws, strict=True)), ins)
             for vs in (got, want)]
    for a, b in zip((*got, *grads[0]), (*want, *grads[1]), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode,nl", KINDS, ids=IDS)
def test_step_gradcheck(mode, nl):
    """The steps' autograd derivatives = finite differences (float64)."""
    G = len(E.GATES[mode]) or 1
    args = [torch.randn(2, 3, dtype=D64), torch.randn(2, 4, dtype=D64)]
    if mode == "LSTM":
        args.append(torch.randn(2, 4, dtype=D64))
    args += [torch.randn(G * 4, 3, dtype=D64), torch.randn(G * 4, 4, dtype=D64),
             torch.randn(G * 4, dtype=D64), torch.randn(G * 4, dtype=D64)]
    args = [a.requires_grad_() for a in args]
    f = {"RNN": lambda *a: E.rnn_step(*a, nonlinearity=nl),
         "LSTM": lambda *a: E.lstm_step(*a)[:2],
         "GRU": lambda *a: E.gru_step(*a)[0]}[mode]
    if nl == "relu":  # keep pre-activations away from the kink at 0
        with torch.no_grad():
            args[0].mul_(3)
    assert torch.autograd.gradcheck(f, tuple(args))


LAYOUTS = ["time_major", "batch_first", "unbatched", "packed"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("L,bi", [(1, False), (2, True)], ids=["L1", "L2-bi"])
@pytest.mark.parametrize("mode,nl", KINDS, ids=IDS)
def test_unroll_equals_torch_layer(mode, nl, L, bi, layout):
    """unroll(layer, x, hx) returns what torch.nn's layer returns, in its layout, and the same
    gradients with respect to the input, the initial state and every weight."""
    ref = _torch_layer(mode, nl, num_layers=L, bidirectional=bi,
                       batch_first=layout == "batch_first")
    D = 2 if bi else 1
    lengths = torch.tensor([4, 6, 2, 5])
    if layout == "unbatched":
        x = torch.randn(T, I, dtype=D64)
        h0 = torch.randn(L * D, H, dtype=D64)
    else:
        x = torch.randn(*((B, T) if layout == "batch_first" else (T, B)), I, dtype=D64)
        h0 = torch.randn(L * D, B, H, dtype=D64)
    x.requires_grad_()
    hx = (h0, torch.randn_like(h0)) if mode == "LSTM" else h0
    results = []
    for run in (ref, lambda inp, hx: E.unroll(ref, inp, hx)):
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if layout == "packed" else x
        res = run(inp, hx)
        out, state = (res.output, (res.h_n, res.c_n) if mode == "LSTM" else res.h_n) \
            if isinstance(res, E.Unrolled) else res
        if layout == "packed":
            out = pad_packed_sequence(out)[0]
        states = state if mode == "LSTM" else (state,)
        loss = (out.sin() * torch.arange(out.numel(), dtype=D64).view(out.shape).cos()).sum() \
            + sum((s.square() * (k + 1)).sum() for k, s in enumerate(states))
        grads = torch.autograd.grad(loss, [x, *ref.parameters()])
        results.append((out, *states, *grads))
    for got, want in zip(results[1], results[0], strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_unroll_from_weights_equals_unroll_of_the_module():
    """unroll(mode, x, weights=...) is the one-layer, time-major layer with those weights."""
    for mode, nl in KINDS:
        ref = _torch_layer(mode, nl)
        x = torch.randn(T, B, I, dtype=D64)
        whole = E.unroll(ref, x)
        one = E.unroll(ref.mode, x, weights=_weights(ref, "_l0"))
        torch.testing.assert_close(one.output, whole.output, rtol=0, atol=0)
        assert len(one.steps) == 1 and len(one.steps[0].h) == T


def test_unroll_steps_records_states_and_gates_in_processing_order():
    ref = _torch_layer("LSTM", "tanh", bidirectional=True)
    x = torch.randn(T, B, I, dtype=D64)
    res = E.unroll(ref, x)
    fwd, rev = res.steps
    out, (h_n, c_n) = ref(x)
    torch.testing.assert_close(torch.stack(fwd.h), out[:, :, :H], rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.stack(rev.h[::-1]), out[:, :, H:], rtol=0, atol=1e-12)
    torch.testing.assert_close(rev.c[-1], c_n[1], rtol=0, atol=1e-12)  # reverse ends at t = 0
    assert fwd.h_prev[0] is fwd.h0 and fwd.h_prev[1] is fwd.h[0]
    assert set(fwd.gates) == {"i", "f", "g", "o"} and len(fwd.gates["f"]) == T


def test_window_truncates_the_gradient_path():
    """window k (k state-to-state steps kept): ∂h_{T−1}/∂x_s is the full gradient for
    s ≥ T − 1 − k and exactly 0 before."""
    ref = _torch_layer("GRU", "tanh")
    x = torch.randn(T, B, I, dtype=D64, requires_grad=True)
    (full,) = torch.autograd.grad(E.unroll(ref, x).h_n.sum(), x)
    for k in (0, 1, 3, T - 1):
        (got,) = torch.autograd.grad(E.unroll(ref, x, window=k).h_n.sum(), x)
        s = T - 1 - k  # the first input the gradient reaches
        torch.testing.assert_close(got[s:], full[s:], rtol=0, atol=0)
        if s:
            assert got[:s].abs().max() == 0 < full[:s].abs().max()


def test_block_h_leaves_the_cell_path_alone():
    """block="h": the gates see h_{t−1} detached, so for L = Σ w ⊙ c_{T−1},
    ∂L/∂c_0 = w ⊙ ∏_{t=1}^{T−1} f_t (closed form); block="c": c_0 reaches the loss through
    h_0 = o ⊙ tanh(c_0) only, ∂L/∂c_0 = ∂L/∂h_0 ⊙ o ⊙ (1 − tanh² c_0);
    the forward values are those of the unblocked layer either way."""
    lstm = rnnlab.LSTM(I, H, forget_bias=1.0, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    w = torch.randn(B, H, dtype=D64)
    (rec,) = E.unroll(lstm, x, block="h", retain_grad=True).steps
    (rec.c[-1] * w).sum().backward()
    f = torch.stack(rec.gates["f"][1:]).prod(0).detach()  # ∏_{t=1}^{T−1} f_t, (B, H)
    torch.testing.assert_close(rec.c[0].grad, w * f, rtol=1e-14, atol=0)
    (rec,) = E.unroll(lstm, x, block="c", retain_grad=True).steps
    (rec.c[-1] * w).sum().backward()
    o, c0 = rec.gates["o"][0].detach(), rec.c[0].detach()
    torch.testing.assert_close(rec.c[0].grad, rec.h[0].grad * o * (1 - c0.tanh() ** 2),
                               rtol=1e-14, atol=0)  # c_0 reaches the loss through h_0 only
    for block in ("h", "c"):
        torch.testing.assert_close(E.unroll(lstm, x, block=block).output, lstm(x)[0])
    with pytest.raises(ValueError, match="block"):
        E.unroll(rnnlab.GRU(2, 3), torch.randn(4, 2), block="c")


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
@pytest.mark.parametrize("mode,nl", KINDS, ids=IDS)
def test_engine_computes_the_equations(mode, nl, packed):
    """The fast path (rnnlab.cells + rnnlab.engine, traced) against the reference: outputs,
    every weight gradient, the telemetry's ∂L/∂h_t against retain_grad, and its gate means."""
    kw = {"nonlinearity": nl} if mode == "RNN" else {}
    layer = getattr(rnnlab, mode)(I, H, num_layers=2, bidirectional=True, dtype=D64,
                                  backend="engine", **kw)
    x = torch.randn(T, B, I, dtype=D64)
    lengths = torch.tensor([4, 6, 2, 5]) if packed else torch.full((B,), T)
    inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
    w = torch.randn(T, B, 2 * H, dtype=D64)
    loss_of = lambda out: ((pad_packed_sequence(out)[0] if packed else out) * w).sum()
    with rnnlab.trace(layer) as tr:
        out = layer(inp)[0]
        grads = torch.autograd.grad(loss_of(out), list(layer.parameters()))
    ref = E.unroll(layer, inp, retain_grad=True)
    loss_of(ref.output).backward()
    torch.testing.assert_close(out.data if packed else out,
                               ref.output.data if packed else ref.output, rtol=0, atol=1e-12)
    for a, p in zip(grads, layer.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=0, atol=1e-12)
    act = (torch.arange(T)[:, None] < lengths[None, :]).to(D64)  # (T, B) active rows
    for k, s in enumerate(ref.steps):
        order = lambda v, s=s: v.flip(0) if s.direction else v  # to input time order
        gh = order(torch.stack([h.grad.norm(dim=1) for h in s.h]))  # (T, B)
        torch.testing.assert_close(tr.grad_h[k], (gh * act).sum(1) / act.sum(1), rtol=0,
                                   atol=1e-10)
        for name, vals in (s.gates or {"h": s.h}).items():
            v = order(torch.stack(vals)).detach()  # (T, B, H)
            want = (v.mean(2) * act).sum(1) / act.sum(1)
            torch.testing.assert_close(tr.gates[name]["mean"][k], want, rtol=0, atol=1e-10)


# -- the LSTM with a projection (torch's proj_size) --------------------------------------------
@pytest.mark.parametrize("packing", ["dense", "packed", "unbatched"])
@pytest.mark.parametrize("num_layers,bidirectional,bias", [(1, False, True), (2, True, True),
                                                           (2, True, False)])
def test_unroll_lstm_with_projection_equals_torch(num_layers, bidirectional, bias, packing):
    """h_t = W_hr (o ⊙ tanh(c_t)): unroll of a torch.nn.LSTM with proj_size = the module's own
    output, states and gradients (h of size P, c of size H, the next layer's input P·D)."""
    P = 2
    ref = nn.LSTM(I, H, num_layers, bias=bias, bidirectional=bidirectional, proj_size=P,
                  dtype=D64)
    LD = num_layers * (2 if bidirectional else 1)
    g = torch.Generator().manual_seed(0)
    lead = () if packing == "unbatched" else (B,)
    x = torch.randn(T, *lead, I, generator=g, dtype=D64, requires_grad=True)
    hx = (torch.randn(LD, *lead, P, generator=g, dtype=D64, requires_grad=True),
          torch.randn(LD, *lead, H, generator=g, dtype=D64, requires_grad=True))
    inp = x
    if packing == "packed":
        inp = pack_padded_sequence(x, torch.tensor([6, 2, 5, 1]), enforce_sorted=False)
    got = E.unroll(ref, inp, hx)
    want_out, (want_h, want_c) = ref(inp, hx)
    outs = [(got.output, want_out), (got.h_n, want_h), (got.c_n, want_c)]
    if packing == "packed":
        outs[0] = (got.output.data, want_out.data)
    for a, b in outs:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    wts = [torch.randn(b.shape, generator=g, dtype=D64) for _, b in outs]
    ins = [x, *hx, *ref.parameters()]
    grads = [torch.autograd.grad(sum((v[k] * w).sum() for v, w in zip(outs, wts, strict=True)),
                                 ins, retain_graph=True) for k in (0, 1)]  # packing is shared
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert got.steps[0].h[0].shape[-1] == P and got.steps[0].c[0].shape[-1] == H
