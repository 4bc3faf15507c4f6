"""rnnlab.trace on plain torch.nn models, and rnnlab.convert.

References: autograd's retain_grad() on every h_t and c_t of ``rnnlab.equations.unroll`` (the
equations run step by step in plain autograd on the torch module's own Parameters), and torch.nn
itself (the untraced module's outputs and parameter gradients)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab import equations

D64 = torch.float64
V, E, H, C, B, T = 11, 4, 5, 3, 4, 7
LENGTHS = torch.tensor([5, 7, 2, 6])


def embed_rnn_head(model: nn.Module, name: str, cls, n_out: int) -> None:
    """model.embed, model.<name> (a 2-layer bidirectional batch-first ``cls``), model.head."""
    model.embed = nn.Embedding(V, E, dtype=D64)
    setattr(model, name, cls(E, H, num_layers=2, bidirectional=True, batch_first=True, dtype=D64))
    model.head = nn.Linear(2 * H, n_out, dtype=D64)


class Tagger(nn.Module):
    """Embedding + 2-layer bidirectional nn.LSTM + linear head, a tag per token."""

    def __init__(self):
        super().__init__()
        embed_rnn_head(self, "lstm", nn.LSTM, V)

    def forward(self, ids, state=None):
        out, _ = self.lstm(self.embed(ids), state)
        return self.head(out)


class Classifier(nn.Module):
    """An nn.GRU classifier over packed sequences: the class from the final states."""

    def __init__(self):
        super().__init__()
        embed_rnn_head(self, "gru", nn.GRU, C)

    def forward(self, ids, lengths, sort=False):
        packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=True,
                                      enforce_sorted=sort)
        _, h_n = self.gru(packed)
        return self.head(torch.cat([h_n[-2], h_n[-1]], 1))


def per_step(u: equations.Unrolled, field: str, T: int) -> torch.Tensor:
    """(L·D, T) batch mean of ‖v.grad‖ of every retained h_t (or c_t), in input order, over
    the rows whose sequence includes t."""
    rows = []
    for st in u.steps:
        vals = getattr(st, field)
        norms = torch.stack([v.grad.norm(dim=1) for v in vals])  # (T, B), processing order
        act = torch.ones_like(norms) if st.active is None else torch.stack(st.active).to(D64)
        if st.direction:  # processing order -> input order
            norms, act = norms.flip(0), act.flip(0)
        rows.append((norms * act).sum(1) / act.sum(1))
    return torch.stack(rows)


def gate_means(u: equations.Unrolled, name: str) -> torch.Tensor:
    rows = []
    for st in u.steps:
        m = torch.stack([g.detach().mean() for g in st.gates[name]])
        rows.append(m.flip(0) if st.direction else m)
    return torch.stack(rows)


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_grads_equal(got, want):
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=0, atol=1e-9, msg=n)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_trace_of_a_torch_lstm_tagger_equals_retain_grad(mode):
    torch.manual_seed(0)
    model = Tagger().train(mode == "train")
    ids, tags = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    state = None
    if mode == "train":  # a given initial state, too
        state = (torch.randn(4, B, H, dtype=D64), torch.randn(4, B, H, dtype=D64))

    F.cross_entropy(model(ids, state).flatten(0, 1), tags.flatten()).backward()
    plain = grads(model)  # torch.nn's own forward and backward
    model.zero_grad()

    u = equations.unroll(model.lstm, model.embed(ids), state, retain_grad=True)
    F.cross_entropy(model.head(u.output).flatten(0, 1), tags.flatten()).backward()
    unrolled = grads(model)
    model.zero_grad()

    with rnnlab.trace(model) as tr:
        F.cross_entropy(model(ids, state).flatten(0, 1), tags.flatten()).backward()
    assert list(tr.layers) == ["lstm"]
    torch.testing.assert_close(tr.grad_h, per_step(u, "h", T), rtol=0, atol=1e-9)
    torch.testing.assert_close(tr.grad_c, per_step(u, "c", T), rtol=0, atol=1e-9)
    for g in "ifgo":
        torch.testing.assert_close(tr.gates[g]["mean"], gate_means(u, g), rtol=0, atol=1e-9)
    assert_grads_equal(grads(model), plain)
    assert_grads_equal(grads(model), unrolled)
    assert "forward" not in vars(model.lstm)  # torch's own forward again


@pytest.mark.parametrize("sort", [False, True], ids=["unsorted", "sorted"])
def test_trace_of_a_torch_gru_classifier_over_packed_sequences(sort):
    torch.manual_seed(1)
    model = Classifier()
    ids, y = torch.randint(0, V, (B, T)), torch.randint(0, C, (B,))
    lengths = LENGTHS.sort(descending=True).values if sort else LENGTHS

    F.cross_entropy(model(ids, lengths, sort), y).backward()
    plain = grads(model)
    model.zero_grad()

    packed = pack_padded_sequence(model.embed(ids), lengths, batch_first=True,
                                  enforce_sorted=sort)
    u = equations.unroll(model.gru, packed, retain_grad=True)
    F.cross_entropy(model.head(torch.cat([u.h_n[-2], u.h_n[-1]], 1)), y).backward()
    model.zero_grad()

    with rnnlab.trace(model) as tr:
        F.cross_entropy(model(ids, lengths, sort), y).backward()
    torch.testing.assert_close(tr["gru"].grad_h, per_step(u, "h", T), rtol=0, atol=1e-9)
    assert tr["gru"].grad_c is None
    for g in "rzn":  # the gate's mean over the rows active at each step
        for k, st in enumerate(u.steps):
            means = torch.stack([v[a].mean() for v, a in zip(st.gates[g], st.active,
                                                               strict=True)]).detach()
            torch.testing.assert_close(tr["gru"].gates[g]["mean"][k],
                                       means.flip(0) if st.direction else means,
                                       rtol=0, atol=1e-9)
    assert_grads_equal(grads(model), plain)


def test_trace_of_an_unbatched_relu_rnn_with_initial_state():
    torch.manual_seed(2)
    rnn = nn.RNN(E, H, num_layers=2, nonlinearity="relu", bidirectional=True, dtype=D64)
    x, h0 = torch.randn(T, E, dtype=D64), torch.randn(4, H, dtype=D64)
    out, h_n = rnn(x, h0)
    (out.sin().sum() + h_n.square().sum()).backward()
    plain = grads(rnn)
    rnn.zero_grad()
    u = equations.unroll(rnn, x, h0, retain_grad=True)
    (u.output.sin().sum() + u.h_n.square().sum()).backward()
    rnn.zero_grad()
    with rnnlab.trace(rnn) as tr:
        out2, h_n2 = rnn(x, h0)
        (out2.sin().sum() + h_n2.square().sum()).backward()
    assert out2.shape == (T, 2 * H) and h_n2.shape == (4, H)
    torch.testing.assert_close(out2, out, rtol=0, atol=1e-12)
    torch.testing.assert_close(tr[""].grad_h, per_step(u, "h", T), rtol=0, atol=1e-9)
    assert_grads_equal(grads(rnn), plain)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_dropout_between_layers_draws_torchs_own_masks(mode, packed):
    """On the CPU, the traced module draws the very dropout masks torch.nn's kernels draw from the
    same random state: outputs and gradients equal torch.nn's."""
    m = getattr(nn, mode)(E, H, num_layers=3, dropout=0.5, bidirectional=True, dtype=D64)
    x = torch.randn(T, B, E, dtype=D64)

    def run():
        torch.manual_seed(5)
        inp = pack_padded_sequence(x, LENGTHS, enforce_sorted=False) if packed else x
        out = m(inp)[0]
        out = pad_packed_sequence(out)[0] if packed else out
        out.sin().sum().backward()
        return out

    want = run()
    plain = grads(m)
    m.zero_grad()
    with rnnlab.trace(m):
        got = run()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert_grads_equal(grads(m), plain)


def test_layers_are_named_and_go_back_untouched_also_on_an_exception():
    torch.manual_seed(3)
    model = nn.ModuleDict({"enc": nn.Sequential(nn.GRU(E, H, dtype=D64)),
                           "mine": rnnlab.LSTM(H, H, dtype=D64, backend="auto")})
    calls = []
    model["enc"][0].register_forward_hook(lambda mod, i, o: calls.append(1))
    x = torch.randn(T, B, E, dtype=D64)
    before = model["enc"][0](x)[0]
    with pytest.raises(RuntimeError, match="boom"):
        with rnnlab.trace(model) as tr:
            assert set(tr.layers) == {"enc.0", "mine"}
            h, _ = model["enc"][0](x)
            model["mine"](h)[0].sum().backward()
            assert tr["enc.0"].grad_h.shape == (1, T) and tr["mine"].grad_c.shape == (1, T)
            raise RuntimeError("boom")
    assert "forward" not in vars(model["enc"][0]) and model["mine"]._runs_fused()
    assert calls == [1, 1]  # the user's hook ran on the traced call too
    torch.testing.assert_close(model["enc"][0](x)[0], before, rtol=0, atol=0)
    with rnnlab.trace(model):
        with pytest.raises(RuntimeError, match="already being traced: 0 "):
            with rnnlab.trace(model["enc"]):
                pass


def test_what_the_engine_cannot_run_is_refused_clearly():
    class Own(nn.LSTM):
        def forward(self, x, hx=None):
            return super().forward(x * 2, hx)

    with pytest.raises(ValueError, match="Own overrides forward"):
        with rnnlab.trace(Own(3, 4)):
            pass
    with pytest.raises(ValueError, match="to must be"):
        rnnlab.convert(nn.GRU(3, 4), to="keras")


def test_a_torch_lstm_with_a_projection_is_traced_and_converted():
    """proj_size: the engine runs h_t = W_hr (o ⊙ tanh(c_t)); the gradients are torch's own and
    grad_h is the gradient reaching the projected h_t (retain_grad on the unrolled reference)."""
    torch.manual_seed(5)
    lstm = nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True).double()
    x = torch.randn(7, 4, 3, dtype=D64)
    want = torch.autograd.grad(lstm(x)[0].pow(2).sum(), list(lstm.parameters()))
    with rnnlab.trace(lstm) as tr:
        out, (h, c) = lstm(x)
        got = torch.autograd.grad(out.pow(2).sum(), list(lstm.parameters()))
    assert out.shape == (7, 4, 4) and h.shape == (4, 4, 2)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    ref = equations.unroll(lstm, x, retain_grad=True)
    ref.output.pow(2).sum().backward()
    torch.testing.assert_close(tr.grad_h, per_step(ref, "h", 7), rtol=0, atol=1e-9)
    params = list(lstm.parameters())
    ours = rnnlab.convert(lstm)
    assert isinstance(ours, rnnlab.LSTM) and ours.proj_size == 2
    assert all(a is b for a, b in zip(ours.parameters(), params, strict=True))
    assert isinstance(rnnlab.convert(ours, to="torch"), nn.LSTM)


# ---- convert ---------------------------------------------------------------------------------

def test_convert_round_trips_with_the_same_parameters():
    torch.manual_seed(4)
    model = Tagger()
    shared = nn.RNN(E, H, nonlinearity="relu", bias=False, dtype=D64)
    model.extra = nn.ModuleList([shared, nn.Sequential(shared)])  # one layer, two references
    model.eval()
    hooked = []
    model.lstm.register_forward_hook(lambda mod, i, o: hooked.append(type(mod).__name__))
    params = dict(model.named_parameters())
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    ids, x = torch.randint(0, V, (B, T)), torch.randn(T, B, E, dtype=D64)
    want, want_rnn = model(ids), shared(x)[0]

    assert rnnlab.convert(model) is model
    assert type(model.lstm) is rnnlab.LSTM and type(model.extra[0]) is rnnlab.RNN
    assert model.extra[0] is model.extra[1][0]  # still one layer
    assert model.extra[0].nonlinearity == "relu" and not model.extra[0].bias
    assert not model.lstm.training and model.lstm.bidirectional and model.lstm.batch_first
    assert all(p is params[n] for n, p in model.named_parameters())  # the very Parameters
    assert list(model.state_dict()) == list(sd)
    torch.testing.assert_close(model(ids), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.extra[0](x)[0], want_rnn, rtol=0, atol=1e-12)
    assert hooked == ["LSTM", "LSTM"] and isinstance(model.lstm, rnnlab.LSTM)

    assert rnnlab.convert(model, to="torch") is model
    assert type(model.lstm) is nn.LSTM and type(model.extra[1][0]) is nn.RNN
    assert all(p is params[n] for n, p in model.named_parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)
    torch.testing.assert_close(model(ids), want, rtol=0, atol=1e-12)
    assert len(hooked) == 3


def test_an_optimizer_keeps_working_across_convert():
    torch.manual_seed(6)
    model = Tagger()
    twin = copy.deepcopy(model)  # never converted
    ids, tags = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    opts = [torch.optim.Adam(m.parameters(), lr=0.1) for m in (model, twin)]
    for step in range(3):
        if step == 1:
            rnnlab.convert(model)
        for m, opt in zip((model, twin), opts, strict=True):
            opt.zero_grad()
            F.cross_entropy(m(ids).flatten(0, 1), tags.flatten()).backward()
            opt.step()
    for (n, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12, msg=n)


def test_convert_a_bare_layer_returns_the_new_one():
    gru = nn.GRU(E, H, num_layers=2, dropout=0.3)
    params = list(gru.parameters())
    new = rnnlab.convert(gru)
    assert type(new) is rnnlab.GRU and new.dropout == 0.3 and new.num_layers == 2
    assert all(a is b for a, b in zip(new.parameters(), params, strict=True))
    back = rnnlab.convert(new, to="torch")
    assert type(back) is nn.GRU and all(a is b for a, b in zip(back.parameters(), params,
                                                                    strict=True))
    assert rnnlab.convert(back, to="torch") is back  # nothing to convert: unchanged
