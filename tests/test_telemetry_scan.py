"""rnnlab.trace on the scan-trained layers (MinGRU, MinLSTM, LRU) against autograd: the papers'
equations run step by step (tests/scan_reference.py) with retain_grad() on every h_t, so h_t.grad
is the total gradient reaching the state — what the scan's reverse adjoint scan must report."""

from __future__ import annotations

import pytest
import scan_reference as ref
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab

D64 = torch.float64
T, B, I, H = 7, 4, 3, 5
LENGTHS = torch.tensor([5, 7, 2, 6])  # unsorted; max = T
CLASSES = {"MinGRU": rnnlab.MinGRU, "MinLSTM": rnnlab.MinLSTM, "LRU": rnnlab.LRU}
GATES = {"MinGRU": {"z"}, "MinLSTM": {"i", "f"}, "LRU": set()}
CASES = [("MinGRU", 2, True, True, "parallel"), ("MinGRU", 1, False, False, "sequential"),
         ("MinLSTM", 2, True, True, "sequential"), ("MinLSTM", 1, False, False, "parallel"),
         ("LRU", 2, True, True, "parallel"), ("LRU", 1, False, True, "sequential")]


@pytest.mark.parametrize("kind,L,bi,packed,scan", CASES,
                         ids=[f"{k}-L{L}-{'bi' if b else 'uni'}-{'packed' if p else 'dense'}-{s}"
                              for k, L, b, p, s in CASES])
def test_trace_equals_autograd(kind, L, bi, packed, scan):
    layer = CLASSES[kind](I, H, num_layers=L, bidirectional=bi, dtype=D64, scan=scan)
    # gates spread wide enough that some saturate (below 0.05 or above 0.95)
    for name, p in layer.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.normal_(p, 0.0, 3.0)
    D = layer.num_directions
    lengths = LENGTHS if packed else torch.full((B,), T)
    x = torch.randn(T, B, I, dtype=D64)
    h0 = torch.randn(L * D, B, H, dtype=D64).to(layer.state_dtype)
    weights = (torch.randn(T, B, D * H, dtype=D64), torch.randn(L * D, B, H, 2, dtype=D64))

    out, h_n, hs, gs, active = ref.run(layer, x, lengths, h0)
    ref_loss = ref.loss_of(out, h_n, weights)
    ref_loss.backward()

    with rnnlab.trace(layer) as tr:
        got, got_h = ref.forward(layer, x, lengths, h0, packed)
        loss = ref.loss_of(got, got_h, weights)
        loss.backward()
    assert layer.scan == scan  # the trace ran the parallel scan and left the attribute alone
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)

    n_act = active.sum(1).to(D64)
    def batch_mean(v):  # v (T, B): mean over the active rows of each step
        return (v * active).sum(1) / n_act

    K = L * D
    want = torch.stack([batch_mean(torch.stack([hs[k, t].grad.abs().pow(2).sum(1).sqrt()
                                                for t in range(T)])) for k in range(K)])
    assert tr.grad_h.shape == (K, T) and tr.grad_h.dtype == D64
    torch.testing.assert_close(tr.grad_h, want, rtol=0, atol=1e-9)
    assert tr.grad_c is None

    assert set(tr.gates) == GATES[kind]
    saturated = False
    for name in GATES[kind]:
        for stat in ("mean", "saturated"):
            w = torch.empty(K, T, dtype=D64)
            for k in range(K):
                for t in range(T):
                    v = gs[k, t][name][active[t]]
                    sat = (v < 0.05) | (v > 0.95)
                    saturated |= bool(sat.any())
                    w[k, t] = v.mean() if stat == "mean" else sat.to(D64).mean()
            torch.testing.assert_close(tr.gates[name][stat], w, rtol=0, atol=1e-9,
                                       msg=lambda m, n=name, s=stat: f"{n} {s}: {m}")
    assert saturated or not GATES[kind]  # the saturation count was exercised


def test_adjoint_includes_the_recurrence_an_outputs_grad_misses_it():
    """A loss on the last output only: the output's gradient is zero before T−1, yet δ_t
    reaches every step through the recurrence, δ_t = (1 − z_{t+1}) ⊙ δ_{t+1}."""
    layer = rnnlab.MinGRU(I, H, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    with rnnlab.trace(layer) as tr:
        out, _ = layer(x)
        out.retain_grad()
        out[-1].sum().backward()
    assert (out.grad[:-1] == 0).all()
    assert (tr.grad_h > 0).all()
    z = torch.sigmoid(x @ layer.weight_ih_l0[:H].T + layer.bias_ih_l0[:H]).detach()
    delta = [None] * T
    delta[-1] = torch.ones(B, H, dtype=D64)
    for t in range(T - 2, -1, -1):
        delta[t] = (1 - z[t + 1]) * delta[t + 1]
    want = torch.stack([d.norm(dim=1).mean() for d in delta])
    torch.testing.assert_close(tr.grad_h[0], want, rtol=1e-12, atol=0)


class Mixed(nn.Module):
    """LSTM -> LRU -> MinLSTM: classic and scan layers in one traced module."""

    def __init__(self):
        super().__init__()
        self.lstm = rnnlab.LSTM(I, H, dtype=D64)
        self.lru = rnnlab.LRU(H, H, dtype=D64)
        self.top = rnnlab.MinLSTM(H, H, dtype=D64)

    def forward(self, x):
        return self.top(self.lru(self.lstm(x)[0])[0])[0]


def test_classic_and_scan_layers_in_one_trace_and_several_calls():
    model = Mixed()
    x = torch.randn(T, B, I, dtype=D64)
    with rnnlab.trace(model) as tr:
        model(x)[-1].sum().backward()
    assert set(tr.layers) == {"lstm", "lru", "top"}
    assert tr["lstm"].grad_c.shape == (1, T) and tr["lru"].grad_c is None
    assert set(tr["top"].gates) == {"i", "f"} and tr["lru"].gates == {}
    assert (tr["lstm"].grad_h > 0).all() and (tr["lru"].grad_h > 0).all()
    # two calls of one layer (a state carried between chunks): recorded in order
    layer = rnnlab.LRU(I, H, dtype=D64)
    with rnnlab.trace(layer) as tr:
        out1, h = layer(x[:3])
        out2, _ = layer(x[3:], h)
        (out1.sum() + 2 * out2.sum()).backward()
    calls = tr.layers[""].calls
    assert [c.grad_h.shape[1] for c in calls] == [3, T - 3]
    with rnnlab.trace(layer) as whole:
        out, _ = layer(x)
        (out[:3].sum() + 2 * out[3:].sum()).backward()
    torch.testing.assert_close(torch.cat([c.grad_h for c in calls], 1), whole.grad_h,
                               rtol=0, atol=1e-12)
    assert layer._taps is None


@pytest.mark.parametrize("kind", ["MinGRU", "MinLSTM", "LRU"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("scan", ["parallel", "sequential"])
def test_every_tensor_follows_the_input_device(kind, packed, scan):
    """On the "meta" device a tensor made on the CPU by mistake anywhere in the layer, the scan
    or the trace would raise. Traced and untraced, forward and backward."""
    layer = CLASSES[kind](I, H, num_layers=2, bidirectional=True, device="meta", scan=scan)
    x = torch.randn(T, B, I, device="meta", requires_grad=True)

    def run():
        inp = pack_padded_sequence(x, LENGTHS, enforce_sorted=False) if packed else x
        out, h_n = layer(inp)
        ((out.data if packed else out).sum() + h_n.abs().sum()).backward()

    with rnnlab.trace(layer) as tr:
        run()
    records = [tr.grad_h] + [v for g in tr.gates.values() for v in g.values()]
    assert {r.device.type for r in records} == {"meta"}
    run()
    assert x.grad.device.type == "meta"
    assert all(p.grad.device.type == "meta" for p in layer.parameters())
