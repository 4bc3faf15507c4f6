"""rnnlab.stepwise: every state, gate, loss and gradient the explorer shows, against independent
references: torch.nn's own layers, plain autograd on the untouched model, and rnnlab.trace."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnlab
from rnnlab import models, stepwise
from rnnlab.errors import UserError


class TorchLM(nn.Module):
    """A plain PyTorch language model: embedding -> torch.nn recurrent layer -> linear."""

    def __init__(self, cls=nn.LSTM, vocab=9, embed=5, hidden=6, num_layers=2,
                 bidirectional=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = cls(embed, hidden, num_layers=num_layers, batch_first=True,
                       bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), vocab)

    def forward(self, ids):
        return self.head(self.rnn(self.embed(ids))[0])


def plain_saliency(model, ids, s):
    """‖∂L_s/∂x_t‖ (t = 0..T−1) and L_s, autograd on the untouched model."""
    emb = model.embed if hasattr(model, "embed") else model.embedding
    x = emb(ids.view(1, -1)).detach().requires_grad_(True)
    handle = emb.register_forward_hook(lambda m, a, out: x)  # the model reads our leaf
    try:
        out = model(ids.view(1, -1))
    finally:
        handle.remove()
    logits = out[0] if isinstance(out, tuple) else out
    loss = F.cross_entropy(logits[0, s - 1], ids[s])
    (g,) = torch.autograd.grad(loss, x)
    return g[0].norm(dim=-1), loss.item()


def traced_grad_h(model, ids, s):
    """rnnlab.trace's ‖∂L_s/∂h_t‖ (L·D, T) of the model's recurrent layer (batch of one)."""
    with rnnlab.trace(model) as tr:
        out = model(ids.view(1, -1))
        logits = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(logits[0, s - 1], ids[s]).backward()
    rec = next(iter(tr.layers.values()))
    return rec.grad_h, rec.grad_c


def check_row(g, r, s, ref, T):
    """Row r (position s) of a Gradients array against ref (T,) over the columns computed."""
    for w in range(g.window):
        t = g.start(s) + w
        if t < 0:
            assert np.isnan(g.saliency[r, w])
        elif g.mode == "full" or t < s:
            np.testing.assert_allclose(g.saliency[r, w], ref[t], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("backbone", ["lstm", "gru", "rnn", "mingru", "minlstm", "lru"])
def test_saliency_and_grad_h_equal_autograd_and_trace(backbone):
    torch.manual_seed(1)
    model = models.build("lm", vocab_size=9, backbone=backbone, hidden_size=5,
                         num_layers=2).double()
    ids = torch.randint(0, 9, (23,))
    rec = stepwise.record(model, ids)
    positions = [1, 5, 12, 22]  # 12 and 22 restart inside the text (window 6)
    g = stepwise.gradients(model, ids, positions, window=6, rec=rec)
    assert g.mode == "window" and g.window == 6 and g.saliency.shape == (4, 6)
    for r, s in enumerate(positions):
        ref, loss = plain_saliency(model, ids, s)
        assert rec.loss[s] == pytest.approx(loss, rel=1e-12)
        check_row(g, r, s, ref.numpy(), ids.numel())
        grad_h, grad_c = traced_grad_h(model, ids, s)
        for k in range(len(rec.layers)):
            for w in range(g.window):
                t = g.start(s) + w
                if 0 <= t < s:
                    np.testing.assert_allclose(g.grad_h[k][r, w], grad_h[k, t], rtol=1e-6)
                    if grad_c is not None:
                        np.testing.assert_allclose(g.grad_c[k][r, w], grad_c[k, t], rtol=1e-6)


def test_states_gates_and_loss_of_a_torch_nn_model():
    torch.manual_seed(2)
    model = TorchLM().double()
    ids = torch.randint(0, 9, (17,))
    rec = stepwise.record(model, ids)
    with torch.no_grad():
        out, (h_n, c_n) = model.rnn(model.embed(ids.view(1, -1)))
        logits = model.head(out)[0]
    loss = F.cross_entropy(logits[:-1], ids[1:], reduction="none")
    np.testing.assert_allclose(rec.loss[1:], loss.numpy(), rtol=1e-12)
    assert np.isnan(rec.loss[0]) and rec.predicted[0] == -1
    np.testing.assert_array_equal(rec.predicted[1:], logits[:-1].argmax(-1).numpy())
    assert [(s.module, s.layer, s.direction, s.mode) for s in rec.layers] == \
        [("rnn", 0, 0, "LSTM"), ("rnn", 1, 0, "LSTM")]
    np.testing.assert_allclose(rec.layers[1].h, out[0].numpy(), rtol=1e-12, atol=1e-14)
    for k in range(2):
        np.testing.assert_allclose(rec.layers[k].h[-1], h_n[k, 0].numpy(), rtol=1e-12)
        np.testing.assert_allclose(rec.layers[k].c[-1], c_n[k, 0].numpy(), rtol=1e-12)
    # layer 0's gates, from torch's weights by hand (i, f, g, o) with torch's h_{t-1}
    first = nn.LSTM(5, 6, batch_first=True).double()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(first, f"{name}_l0").data.copy_(getattr(model.rnn, f"{name}_l0"))
    with torch.no_grad():
        h0 = first(model.embed(ids.view(1, -1)))[0][0]
        x = model.embed(ids)
        prev = torch.cat([torch.zeros(1, 6, dtype=torch.float64), h0[:-1]])
        a = x @ first.weight_ih_l0.T + first.bias_ih_l0 + prev @ first.weight_hh_l0.T + \
            first.bias_hh_l0
    ai, af, ag, ao = a.chunk(4, -1)
    expect = {"i": ai.sigmoid(), "f": af.sigmoid(), "g": ag.tanh(), "o": ao.sigmoid()}
    for name, v in expect.items():
        np.testing.assert_allclose(rec.layers[0].gates[name], v.numpy(), rtol=1e-11, atol=1e-13)
    sat = rec.layers[0].saturation()
    np.testing.assert_array_equal(sat["f"], ((expect["f"] < .05) | (expect["f"] > .95)).sum(1))


def test_the_model_is_given_back_as_it_was():
    model = TorchLM().train()
    ids = torch.randint(0, 9, (12,))
    threads = torch.get_num_threads()
    stepwise.gradients(model, ids, [4, 11], window=3)
    assert model.training and model.rnn.training
    assert "forward" not in vars(model.rnn)
    assert all(p.grad is None for p in model.parameters())  # no parameter gradient
    assert torch.get_num_threads() == threads
    packed = nn.utils.rnn.pack_sequence([torch.zeros(3, 5)])
    with pytest.raises(UserError, match="PackedSequence"), stepwise._StepByStep(model):
        model.rnn(packed)
    with pytest.raises(UserError, match="more than once"), stepwise._StepByStep(model):
        model.rnn(torch.zeros(1, 3, 5))
        model.rnn(torch.zeros(1, 3, 5))
    assert "forward" not in vars(model.rnn)  # also after an error


def test_a_bidirectional_model_gets_full_rows():
    torch.manual_seed(3)
    model = TorchLM(nn.GRU, bidirectional=True, num_layers=1).double()
    ids = torch.randint(0, 9, (11,))
    g = stepwise.gradients(model, ids, [3, 10], window=4)
    assert g.mode == "full" and g.window == 11 and "bidirectional" in g.note
    for r, s in enumerate([3, 10]):
        ref, _ = plain_saliency(model, ids, s)
        check_row(g, r, s, ref.numpy(), 11)
        assert g.saliency[r, s:].max() > 0  # later tokens count too
        grad_h, _ = traced_grad_h(model, ids, s)
        np.testing.assert_allclose(g.grad_h[1][r], grad_h[1], rtol=1e-6)  # the reverse one


class Peeking(TorchLM):
    """Not causal: every logit also sees the mean of the recurrent layer's outputs."""

    def forward(self, ids):
        out = self.rnn(self.embed(ids))[0]
        return self.head(out + out.mean(1, keepdim=True))


def test_a_model_that_is_not_left_to_right_falls_back_to_full_rows():
    torch.manual_seed(4)
    model = Peeking().double()
    ids = torch.randint(0, 9, (14,))
    g = stepwise.gradients(model, ids, [9, 13], window=3)
    assert g.mode == "full" and "another loss" in g.note
    for r, s in enumerate([9, 13]):
        check_row(g, r, s, plain_saliency(model, ids, s)[0].numpy(), 14)


def test_user_errors():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.e = nn.Embedding(5, 4)

        def forward(self, ids):
            return self.e(ids)

    with pytest.raises(UserError, match="no recurrent layer"):
        stepwise.record(Attention(), torch.tensor([1, 2, 3]))
    with pytest.raises(UserError, match="at least 2 tokens"):
        stepwise.record(TorchLM(), torch.tensor([1]))

    class Flat(TorchLM):
        def forward(self, ids):
            return super().forward(ids)[0]  # (T, V): no batch

    with pytest.raises(UserError, match="next-token logits"):
        stepwise.record(Flat(), torch.tensor([1, 2, 3]))
    with pytest.raises(UserError, match="positions"):
        stepwise.gradients(TorchLM(), torch.tensor([1, 2, 3]), [3], window=2)


def test_default_positions():
    assert stepwise.default_positions(5, 10) == [1, 2, 3, 4]
    assert stepwise.default_positions(5, None) == [1, 2, 3, 4]
    assert stepwise.default_positions(5, 0) == []
    assert stepwise.default_positions(101, 10) == list(range(10, 101, 10))
    assert stepwise.default_positions(1001, 512) == list(range(2, 1001, 2))
