"""rnnlab.trace against autograd: a reference built from torch.nn cells run step by step in a
Python loop (copied weights), every h_t and c_t kept with retain_grad(), so h_t.grad is the total
gradient reaching h_t (from the loss at t, from h_{t+1}, from the layer above, from h_n); the
gates of each step recomputed with rnnlab.equations (itself tested against torch.nn)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab import equations

# every test runs on both engine paths: the Python loops and the native kernels
pytestmark = pytest.mark.usefixtures("kernels")

D64 = torch.float64
T, B, I, H = 7, 4, 3, 5
LENGTHS = torch.tensor([5, 7, 2, 6])  # unsorted; max = T
CELL = {"LSTM": nn.LSTMCell, "GRU": nn.GRUCell, "RNN": nn.RNNCell}


def _weights(cell):
    return cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh


def reference(layer, x, lengths, h0, c0, weights):
    """Run ``layer``'s equations with torch.nn cells, step by step. x (T, B, I) padded.
    Returns (loss, {(k, t): h_t}, {(k, t): c_t}, {(k, t): gates}, active (T, B))."""
    mode, L, D = layer.mode, layer.num_layers, layer.num_directions
    active = torch.arange(T)[:, None] < lengths[None, :]  # (T, B)
    inp = list(x.unbind(0))
    hs, cs, gs, h_n, c_n = {}, {}, {}, [], []
    for layer_idx in range(L):
        outs = []
        for d in range(D):
            k = layer_idx * D + d
            kw = {"nonlinearity": layer.nonlinearity} if mode == "RNN" else {}
            cell = CELL[mode](inp[0].shape[1], H, dtype=D64, **kw)
            w_ih, w_hh, b_ih, b_hh = layer.weights(layer_idx, d)
            with torch.no_grad():
                for name, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                                   (w_ih, w_hh, b_ih, b_hh), strict=True):
                    getattr(cell, name).copy_(w)
            h, c = h0[k], (c0[k] if mode == "LSTM" else None)
            out = [None] * T
            for t in (range(T - 1, -1, -1) if d else range(T)):
                m = active[t][:, None]
                _, _, gates = equations.step(mode, inp[t], h, c, _weights(cell),
                                             layer.nonlinearity)  # the gates, recomputed
                gs[k, t] = {n: v.detach() for n, v in gates.items()}
                if mode == "LSTM":
                    h_new, c_new = cell(inp[t], (h, c))
                    c_new.retain_grad()  # c_t: it feeds h_t (inside the cell) and c_{t+1}
                    cs[k, t] = c_new
                    c = torch.where(m, c_new, c)  # inactive rows keep their state
                else:
                    h_new = cell(inp[t], h)
                h = torch.where(m, h_new, h)
                h.retain_grad()
                hs[k, t] = h
                out[t] = h * m  # padding positions of the output are zero
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        inp = [torch.cat([o[t] for o in outs], 1) for t in range(T)]
    output = torch.stack(inp)  # (T, B, D·H)
    loss = loss_of(output, torch.stack(h_n), torch.stack(c_n) if mode == "LSTM" else None,
                   weights)
    return loss, hs, cs, gs, active


def loss_of(output, h_n, c_n, weights):
    """A loss touching every output position and the final states, with random weights."""
    loss = (output * weights[0]).sum() + (h_n.tanh() * weights[1]).sum()
    if c_n is not None:
        loss = loss + (c_n**2 * weights[2]).sum()
    return loss


def _saturated(name, v, nonlinearity):
    if name in "ifozr":
        return (v < 0.05) | (v > 0.95)
    if name == "h" and nonlinearity == "relu":
        return v == 0
    return v.abs() > 0.95


CASES = [
    ("LSTM", {}, 2, True, True),
    ("GRU", {}, 2, True, True),
    ("RNN", {}, 2, True, True),
    ("LSTM", {}, 1, False, False),
    ("GRU", {}, 1, False, True),
    ("RNN", {"nonlinearity": "relu"}, 2, False, True),
    ("LSTM", {}, 3, True, False),
]


@pytest.mark.parametrize("mode,kw,L,bi,packed", CASES,
                         ids=[f"{m}{kw.get('nonlinearity', '')}-L{L}-{'bi' if b else 'uni'}-"
                              f"{'packed' if p else 'dense'}" for m, kw, L, b, p in CASES])
def test_trace_equals_autograd(mode, kw, L, bi, packed):
    layer = getattr(rnnlab, mode)(I, H, num_layers=L, bidirectional=bi, dtype=D64, **kw)
    D = 2 if bi else 1
    lengths = LENGTHS if packed else torch.full((B,), T)
    x = torch.randn(T, B, I, dtype=D64)
    h0 = torch.randn(L * D, B, H, dtype=D64)
    c0 = torch.randn(L * D, B, H, dtype=D64)
    weights = (torch.randn(T, B, D * H, dtype=D64), torch.randn(L * D, B, H, dtype=D64),
               torch.randn(L * D, B, H, dtype=D64))

    ref_loss, hs, cs, gs, active = reference(layer, x, lengths, h0, c0, weights)
    ref_loss.backward()

    hx = (h0, c0) if mode == "LSTM" else h0
    with rnnlab.trace(layer) as tr:
        if packed:
            out, state = layer(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
            out = pad_packed_sequence(out, total_length=T)[0]
        else:
            out, state = layer(x, hx)
        h_n, c_n = state if mode == "LSTM" else (state, None)
        loss = loss_of(out, h_n, c_n, weights)
        loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-12)

    n_act = active.sum(1).to(D64)  # (T,)
    def batch_mean(v):  # v (T, B): mean over the active rows of each step
        return (v * active).sum(1) / n_act

    K = L * D
    want_h = torch.stack([batch_mean(torch.stack([hs[k, t].grad.norm(dim=1) for t in range(T)]))
                          for k in range(K)])
    assert tr.grad_h.shape == (K, T)
    torch.testing.assert_close(tr.grad_h, want_h, rtol=0, atol=1e-9)
    if mode == "LSTM":
        want_c = torch.stack([batch_mean(torch.stack([cs[k, t].grad.norm(dim=1)
                                                      for t in range(T)])) for k in range(K)])
        torch.testing.assert_close(tr.grad_c, want_c, rtol=0, atol=1e-9)
    else:
        assert tr.grad_c is None

    # gate statistics from the reference's own gates
    nl = layer.nonlinearity
    names = {"LSTM": "ifgo", "GRU": "rzn", "RNN": "h"}[mode]
    assert set(tr.gates) == set(names)
    for name in names:
        for stat in ("mean", "saturated"):
            want = torch.empty(K, T, dtype=D64)
            for k in range(K):
                for t in range(T):
                    v = gs[k, t][name] if name != "h" else hs[k, t].detach()
                    v = v[active[t]]
                    want[k, t] = (v.mean() if stat == "mean"
                                  else _saturated(name, v, nl).to(D64).mean())
            torch.testing.assert_close(tr.gates[name][stat], want, rtol=0, atol=1e-9,
                                       msg=lambda m, n=name, s=stat: f"{n} {s}: {m}")


class TinyLM(nn.Module):
    """Embedding -> LSTM -> GRU -> Linear: two recurrent layers inside a bigger module."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, I, dtype=D64)
        self.rnn = nn.Sequential()  # a nested name: "rnn.0"
        self.rnn.append(rnnlab.LSTM(I, H, batch_first=True, dtype=D64))
        self.top = rnnlab.GRU(H, H, batch_first=True, dtype=D64)
        self.head = nn.Linear(H, 11, dtype=D64)

    def forward(self, ids):
        h, _ = self.rnn[0](self.embed(ids))
        h, _ = self.top(h)
        return self.head(h)


def test_trace_on_a_module_containing_layers():
    model = TinyLM()
    ids = torch.randint(0, 11, (B, T))
    with rnnlab.trace(model) as tr:
        logits = model(ids)
        F.cross_entropy(logits[:, -1], ids[:, 0]).backward()  # loss at the last step only
    assert set(tr.layers) == {"rnn.0", "top"}
    with pytest.raises(AttributeError, match=r"2 recurrent layers.*tr\[name\]"):
        _ = tr.grad_h
    for name in ("rnn.0", "top"):
        assert tr[name].grad_h.shape == (1, T)
    assert tr["rnn.0"].grad_c.shape == (1, T) and tr["top"].grad_c is None
    # the loss sits on the last step: ∂L/∂h_t of the top layer reaches every step through the
    # recurrence only, and the value at the loss step is ‖W_headᵀ(p − y)‖, positive
    assert (tr["top"].grad_h > 0).all()
    # the same numbers as a single-layer trace of the top layer alone
    with rnnlab.trace(model.top) as tr_top:
        F.cross_entropy(model(ids)[:, -1], ids[:, 0]).backward()
    torch.testing.assert_close(tr_top.grad_h, tr["top"].grad_h, rtol=0, atol=1e-12)
    with pytest.raises(KeyError, match="traced"):
        _ = tr["nope"]


def test_trace_errors_and_cleanup():
    layer = rnnlab.GRU(I, H, backend="fused")
    with pytest.raises(ValueError, match="no recurrent layer"):
        with rnnlab.trace(nn.Linear(2, 2)):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with rnnlab.trace(layer):
            assert layer._taps is not None and not layer._runs_fused()  # forces the engine
            raise RuntimeError("boom")
    assert layer._taps is None and layer._runs_fused()  # taps removed on the way out
    with rnnlab.trace(layer) as tr:
        with pytest.raises(RuntimeError, match="already being traced"):
            with rnnlab.trace(layer):
                pass
        with pytest.raises(RuntimeError, match="not run a forward"):
            _ = tr.grad_h
        layer(torch.randn(T, B, I))
        with pytest.raises(RuntimeError, match="no backward pass"):
            _ = tr.grad_h
        assert tr.gates["z"]["mean"].shape == (1, T)  # the forward's statistics are there


def test_several_forwards_are_recorded_in_order():
    layer = rnnlab.LSTM(I, H, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    with rnnlab.trace(layer) as tr:
        out1, state = layer(x[:3])
        out2, _ = layer(x[3:], state)  # a second chunk, carrying the state
        (out1.sum() + 2 * out2.sum()).backward()
    calls = tr.layers[""].calls
    assert [c.grad_h.shape[1] for c in calls] == [3, T - 3]
    torch.testing.assert_close(tr.grad_h, calls[-1].grad_h)
    # the same as one forward over the whole sequence with the same loss
    with rnnlab.trace(layer) as whole:
        out, _ = layer(x)
        (out[:3].sum() + 2 * out[3:].sum()).backward()
    torch.testing.assert_close(torch.cat([c.grad_h for c in calls], 1), whole.grad_h,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_fused_backends_match_the_engine_and_fill_own_grads(mode, packed):
    """backend="auto"/"fused" call torch's kernels on the module's very Parameters."""
    mods = {b: getattr(rnnlab, mode)(I, H, num_layers=2, bidirectional=True, batch_first=True,
                                     dtype=D64, backend=b) for b in ("engine", "auto", "fused")}
    for m in mods.values():
        m.load_state_dict(mods["engine"].state_dict())
    x = torch.randn(B, T, I, dtype=D64)
    results = {}
    for b, m in mods.items():
        inp = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False) \
            if packed else x
        out, state = m(inp)
        if packed:
            out = pad_packed_sequence(out, batch_first=True)[0]
        h = state[0] if mode == "LSTM" else state
        (out.sin().sum() + h.cos().sum()).backward()
        results[b] = (out, h, *[p.grad for p in m.parameters()])
        assert all(p.grad is not None for p in m.parameters())
    for b in ("auto", "fused"):
        for got, want in zip(results[b], results["engine"], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert mods["auto"]._runs_fused() and not mods["engine"]._runs_fused()


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_trace_on_cuda_matches_cpu(mode):
    layer = getattr(rnnlab, mode)(I, H, num_layers=2, bidirectional=True, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    got = {}
    for dev in ("cpu", "cuda"):
        layer.to(dev)
        with rnnlab.trace(layer) as tr:
            layer(x.to(dev))[0].square().sum().backward()
        got[dev] = tr.grad_h.cpu()
    torch.testing.assert_close(got["cuda"], got["cpu"], rtol=1e-9, atol=1e-9)



@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("kind", ["rnnlab", "torch.nn"])
def test_every_tensor_follows_the_input_device(mode, packed, kind):
    """Device-agnostic without a GPU: on the "meta" device any tensor the engine, the trace or
    the layer made on the CPU by mistake would raise ("Tensor on device cpu is not on the
    expected device meta"). Traced (engine) and untraced (fused) runs, forward and backward,
    rnnlab's layers and torch.nn's (with dropout between layers)."""
    lib = rnnlab if kind == "rnnlab" else nn
    layer = getattr(lib, mode)(I, H, num_layers=2, bidirectional=True, device="meta",
                               dropout=0.3)
    x = torch.randn(T, B, I, device="meta", requires_grad=True)

    def run():
        inp = pack_padded_sequence(x, LENGTHS, enforce_sorted=False) if packed else x
        out, _ = layer(inp)
        (out.data if packed else out).sum().backward()

    with rnnlab.trace(layer) as tr:
        run()
    records = [tr.grad_h] + [v for g in tr.gates.values() for v in g.values()]
    if mode == "LSTM":
        records.append(tr.grad_c)
    assert {r.device.type for r in records} == {"meta"}
    assert x.grad.device.type == "meta" and layer.weight_hh_l1_reverse.grad.device.type == "meta"
    if kind == "rnnlab":
        run()  # untraced: torch's fused kernels on the same Parameters
