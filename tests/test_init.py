"""Initialisation: torch's default distribution, and rnnlab's extras (forget-gate bias,
orthogonal recurrent weights, a prescribed spectral radius) checked against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rnnlab

CHUNKS = {"RNN": 1, "LSTM": 4, "GRU": 3}


def gate_blocks(layer):
    """Every H×H gate block of every W_hh of a layer (all layers and directions)."""
    H = layer.hidden_size
    for name, p in layer.named_parameters():
        if name.startswith("weight_hh"):
            yield from p.detach().split(H, 0)


# -- torch's default ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_default_init_is_uniform_like_torch(cls):
    """Every parameter ~ U(−k, k), k = 1/√H: bounded by k, not constant, mean 0, std k/√3."""
    hidden = 128
    layer = getattr(rnnlab, cls)(64, hidden, num_layers=2, bidirectional=True)
    k = 1 / math.sqrt(hidden)
    everything = torch.cat([p.detach().flatten() for p in layer.parameters()])
    for name, p in layer.named_parameters():
        assert p.abs().max().item() <= k, name
        assert p.std().item() > 0.5 * k / math.sqrt(3), name  # not constant, not tiny
    n = everything.numel()
    assert n > 100_000
    assert abs(everything.mean().item()) < 4 * k / math.sqrt(3 * n)
    assert everything.std().item() == pytest.approx(k / math.sqrt(3), rel=0.05)
    for name, p in layer.named_parameters():
        if p.numel() > 10_000:  # each large matrix on its own
            assert p.std().item() == pytest.approx(k / math.sqrt(3), rel=0.05), name


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_default_init_draws_what_torch_draws(cls):
    """The same generator state gives torch's very numbers (same distribution, same order)."""
    torch.manual_seed(11)
    ours = getattr(rnnlab, cls)(3, 7)
    torch.manual_seed(11)
    ref = getattr(nn, cls)(3, 7)
    for (name, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(a, b), name


# -- forget-gate bias -----------------------------------------------------------------------
@pytest.mark.parametrize("value", [1.0, 0.0, -2.5])
def test_forget_bias_sets_the_effective_bias(value):
    lstm = rnnlab.LSTM(3, 5, num_layers=2, bidirectional=True, forget_bias=value)
    H, k = 5, 1 / math.sqrt(5)
    for layer in range(2):
        for d in range(2):
            _, _, b_ih, b_hh = lstm.weights(layer, d)
            # the gate sees b_ih + b_hh: that sum is the value given, not twice it
            assert torch.equal(b_ih[H : 2 * H] + b_hh[H : 2 * H], torch.full((H,), value))
            for b in (b_ih, b_hh):  # i, g, o biases keep torch's U(−k, k)
                rest = torch.cat((b[:H], b[2 * H :])).detach()
                assert rest.abs().max() <= k and rest.unique().numel() == rest.numel()


def test_forget_bias_on_the_lstm_cell():
    cell = rnnlab.LSTMCell(3, 5, forget_bias=1.0)
    assert torch.equal(cell.bias_ih[5:10] + cell.bias_hh[5:10], torch.ones(5))


def test_forget_bias_reaches_torch_through_the_state_dict():
    """torch.nn.LSTM loaded with the weights: its forget gate is σ(1) when W = 0 and x = 0."""
    ours = rnnlab.LSTM(2, 3, forget_bias=1.0, dtype=torch.float64)
    with torch.no_grad():
        ours.weight_ih_l0.zero_()
        ours.weight_hh_l0.zero_()
    ref = nn.LSTM(2, 3, dtype=torch.float64)
    ref.load_state_dict(ours.state_dict())
    c0 = torch.ones(1, 1, 3, dtype=torch.float64)
    h0 = torch.zeros(1, 1, 3, dtype=torch.float64)
    _, (_, c1) = ref(torch.zeros(1, 1, 2, dtype=torch.float64), (h0, c0))
    b = (ours.bias_ih_l0 + ours.bias_hh_l0).detach()
    i, g = torch.sigmoid(b[:3]), torch.tanh(b[6:9])
    # c_1 = f ⊙ c_0 + i ⊙ g with f = σ(1)
    assert torch.allclose(c1[0, 0], torch.sigmoid(torch.tensor(1.0, dtype=torch.float64)) + i * g,
                          rtol=0, atol=1e-15)


def test_forget_bias_errors():
    # RNN and GRU have no forget gate: their constructors do not take the option
    for cls in (rnnlab.RNN, rnnlab.GRU):
        with pytest.raises(TypeError, match="forget_bias"):
            cls(3, 5, forget_bias=1.0)
    for cls in (rnnlab.RNNCell, rnnlab.GRUCell):
        with pytest.raises(ValueError, match="forget_bias applies to the LSTM only"):
            cls(3, 5, forget_bias=1.0)
    for cls in (rnnlab.LSTM, rnnlab.LSTMCell):
        with pytest.raises(ValueError, match="forget_bias needs bias=True"):
            cls(3, 5, bias=False, forget_bias=1.0)


# -- orthogonal recurrent weights, spectral radius ------------------------------------------
@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("r", [None, 0.5, 0.9, 1.0, 1.5])
def test_orthogonal_init_is_r_times_orthogonal(cls, r):
    """W_hh = r·Q per gate block: every singular value is r (1 when no radius is given)."""
    layer = getattr(rnnlab, cls)(3, 6, num_layers=2, bidirectional=True, dtype=torch.float64,
                                 recurrent_init="orthogonal", spectral_radius=r)
    want = 1.0 if r is None else r
    blocks = list(gate_blocks(layer))
    assert len(blocks) == 2 * 2 * CHUNKS[cls]
    for block in blocks:
        s = torch.linalg.svdvals(block)
        assert torch.allclose(s, torch.full_like(s, want), rtol=1e-10, atol=0)
        # (r·Q)ᵀ(r·Q) = r²·I
        assert torch.allclose(block.T @ block, want**2 * torch.eye(6, dtype=torch.float64),
                              atol=1e-12)
    assert not torch.allclose(blocks[0], blocks[1])  # a fresh Q per block
    k = 1 / math.sqrt(6)
    for name, p in layer.named_parameters():  # the rest keeps torch's U(−k, k)
        if not name.startswith("weight_hh"):
            assert p.abs().max() <= k, name


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("r", [0.5, 1.0, 2.0])
def test_spectral_radius_with_default_init(cls, r):
    """Default U(−k, k) blocks rescaled: max |eigenvalue| of every gate block is r."""
    layer = getattr(rnnlab, cls)(3, 6, num_layers=2, dtype=torch.float64, spectral_radius=r)
    for block in gate_blocks(layer):
        rho = torch.linalg.eigvals(block).abs().max().item()
        assert rho == pytest.approx(r, rel=1e-10)


def test_orthogonal_init_with_forget_bias():
    lstm = rnnlab.LSTM(3, 4, forget_bias=1.0, recurrent_init="orthogonal", spectral_radius=0.8,
                       dtype=torch.float64)
    assert torch.equal(lstm.bias_ih_l0[4:8] + lstm.bias_hh_l0[4:8],
                       torch.ones(4, dtype=torch.float64))
    for block in gate_blocks(lstm):
        s = torch.linalg.svdvals(block)
        assert torch.allclose(s, torch.full_like(s, 0.8), rtol=1e-10, atol=0)


def test_reset_parameters_redraws_with_the_options():
    lstm = rnnlab.LSTM(3, 4, forget_bias=1.0, recurrent_init="orthogonal", dtype=torch.float64)
    before = lstm.weight_hh_l0.detach().clone()
    lstm.reset_parameters()
    assert not torch.equal(before, lstm.weight_hh_l0)
    assert torch.equal(lstm.bias_ih_l0[4:8] + lstm.bias_hh_l0[4:8],
                       torch.ones(4, dtype=torch.float64))
    s = torch.linalg.svdvals(lstm.weight_hh_l0[:4].detach())
    assert torch.allclose(s, torch.ones_like(s), rtol=1e-10, atol=0)
