"""rnnlab.models: causality, padding invariance, final states, configs, parameter counts, and a
seq2seq model that learns to reverse sequences."""

import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnlab
from rnnlab import models
from rnnlab.data import CharTokenizer, masked_mean, shakespeare_text
from rnnlab.errors import UserError

D64 = torch.float64
TORCH_LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def double(m):
    return m.double().eval()


# -- language model --------------------------------------------------------------------------
LM_CASES = [("rnn", {}), ("lstm", {}), ("gru", {}),
            ("attention", {"positional": "learned"}), ("attention", {"positional": "sinusoidal"})]


@pytest.mark.parametrize("backbone,kw", LM_CASES)
def test_lm_is_causal_by_perturbation(backbone, kw):
    m = double(models.build("lm", vocab_size=7, backbone=backbone, hidden_size=8, num_layers=2,
                            num_heads=2, max_len=16, **kw))
    T = 6
    x = torch.randint(0, 7, (3, T))
    logits, _ = m(x)
    assert logits.shape == (3, T, 7)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1:] = (x2[:, t + 1:] + torch.randint(1, 7, (3, T - t - 1))) % 7  # all changed
        logits2, _ = m(x2)
        assert (logits2[:, : t + 1] - logits[:, : t + 1]).abs().max() <= 1e-12
        assert (logits2[:, t + 1:] - logits[:, t + 1:]).abs().max() > 1e-8  # not trivially const


@pytest.mark.parametrize("backbone", ["rnn", "lstm", "gru"])
def test_lm_state_carries_across_chunks(backbone):
    m = double(models.build("lm", vocab_size=5, backbone=backbone, hidden_size=6, num_layers=2))
    x = torch.randint(0, 5, (2, 9))
    full, state_full = m(x)
    a, state = m(x[:, :4])
    b, state = m(x[:, 4:], state)
    torch.testing.assert_close(torch.cat((a, b), 1), full, rtol=1e-12, atol=1e-12)
    flat = lambda s: torch.cat([t.flatten() for t in (s if isinstance(s, tuple) else (s,))])
    torch.testing.assert_close(flat(state), flat(state_full))


def test_lm_matches_torch_nn_reference():
    m = double(models.build("lm", vocab_size=6, backbone="lstm", hidden_size=5, num_layers=2,
                            embed_size=4, forget_bias=1.0))
    ref = nn.LSTM(4, 5, 2, batch_first=True).double()
    ref.load_state_dict(m.backbone.state_dict())
    x = torch.randint(0, 6, (3, 7))
    h, _ = ref(m.embedding(x))
    torch.testing.assert_close(m(x)[0], m.decoder(h))
    _, w_hh, b_ih, b_hh = m.backbone.weights(0)
    torch.testing.assert_close((b_ih + b_hh)[5:10], torch.ones(5, dtype=D64))  # forget bias 1


def test_attention_lm_has_no_state():
    m = models.build("lm", vocab_size=5, backbone="attention", hidden_size=8, num_layers=1,
                     num_heads=2, max_len=8)
    logits, state = m(torch.randint(0, 5, (2, 8)))
    assert state is None and isinstance(m.backbone, rnnlab.attention.AttentionStack)
    with pytest.raises(UserError, match="max_len"):
        m(torch.randint(0, 5, (2, 9)))


def test_weight_tying_shares_the_tensor():
    for backbone in ("lstm", "attention"):
        m = models.build("lm", vocab_size=9, backbone=backbone, hidden_size=8, num_layers=1,
                         num_heads=2, tie_weights=True)
        assert m.decoder.weight is m.embedding.weight
        untied = models.build("lm", vocab_size=9, backbone=backbone, hidden_size=8,
                              num_layers=1, num_heads=2)
        assert m.num_parameters() == untied.num_parameters() - 9 * 8
        m(torch.randint(0, 9, (2, 3)))[0].sum().backward()
        assert m.embedding.weight.grad is m.decoder.weight.grad
    with pytest.raises(UserError, match="embed_size == hidden_size"):
        models.build("lm", vocab_size=9, hidden_size=8, embed_size=4, tie_weights=True)


# -- configs, build and errors -------------------------------------------------------------------
CONFIGS = [
    ("lm", dict(vocab_size=11, backbone="gru", hidden_size=8, num_layers=2, dropout=0.1)),
    ("lm", dict(vocab_size=11, backbone="attention", hidden_size=8, embed_size=4, num_heads=2,
                positional="sinusoidal", max_len=32)),
    ("lm", dict(vocab_size=11, backbone="rnn", hidden_size=8, nonlinearity="relu",
                recurrent_init="orthogonal", spectral_radius=0.9)),
    ("classifier", dict(num_classes=3, vocab_size=10, backbone="lstm", hidden_size=6,
                        bidirectional=True, forget_bias=1.0)),
    ("classifier", dict(num_classes=3, input_size=4, backbone="attention", hidden_size=8,
                        num_heads=2, pooling="mean")),
    ("regressor", dict(input_size=2, backbone="gru", hidden_size=6, num_layers=2)),
    ("seq2seq", dict(src_vocab=7, tgt_vocab=9, backbone="lstm", hidden_size=6,
                     attention="additive", bidirectional_encoder=True)),
    ("seq2seq", dict(src_vocab=7, tgt_vocab=9, backbone="gru", hidden_size=6, attention="dot")),
]


@pytest.mark.parametrize("name,cfg", CONFIGS)
def test_build_round_trips_through_json_config(name, cfg):
    m = models.build(name, **cfg)
    assert m.config["name"] == name
    assert all(m.config[k] == v for k, v in cfg.items())
    again = models.build(**json.loads(json.dumps(m.config)))
    assert type(again) is type(m) and again.config == m.config
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in m.state_dict().items()}
    again.load_state_dict(m.state_dict())
    assert again.num_parameters() == m.num_parameters() == sum(
        p.numel() for p in m.parameters())
    assert m.backbone is not None


@pytest.mark.parametrize("name,cfg,match", [
    ("transformer", {}, "lm, classifier, regressor, seq2seq"),
    ("lm", dict(vocab_size=5, backbone="lstmx"), "rnn, lstm, gru, mingru, minlstm, lru, attention"),
    ("lm", dict(vocab_size=5, hidden=3), "unknown option.*hidden_size"),
    ("lm", {}, "needs vocab_size"),
    ("lm", dict(vocab_size=0), "vocab_size must be a positive integer"),
    ("lm", dict(vocab_size=5, hidden_size="8"), "hidden_size"),
    ("lm", dict(vocab_size=5, num_layers=0), "num_layers"),
    ("lm", dict(vocab_size=5, dropout=1.5), "dropout"),
    ("lm", dict(vocab_size=5, backbone="gru", forget_bias=1.0), "lstm backbone only"),
    ("lm", dict(vocab_size=5, backbone="lstm", nonlinearity="relu"), "rnn backbone only"),
    ("lm", dict(vocab_size=5, backbone="attention", hidden_size=6, num_heads=4), "divisible"),
    ("lm", dict(vocab_size=5, backbone="attention", recurrent_init="orthogonal"),
     "recurrent backbones"),
    ("lm", dict(vocab_size=5, recurrent_init="eye"), "default, orthogonal"),
    ("classifier", dict(num_classes=2), "exactly one of vocab_size"),
    ("classifier", dict(num_classes=2, vocab_size=3, input_size=3), "exactly one of"),
    ("classifier", dict(num_classes=2, vocab_size=3, pooling="max"), "last, mean"),
    ("classifier", dict(num_classes=2, vocab_size=3, backbone="attention", bidirectional=True),
     "bidirectional"),
    ("seq2seq", dict(src_vocab=3, tgt_vocab=3, attention="luong"), "None, additive, dot"),
    ("seq2seq", dict(src_vocab=3, tgt_vocab=3, backbone="attention"), "rnn, lstm, gru"),
])
def test_build_errors_are_user_errors_listing_choices(name, cfg, match):
    with pytest.raises(UserError, match=match):
        models.build(name, **cfg)


# -- parameter counts ----------------------------------------------------------------------------
@pytest.mark.parametrize("I,H,L,bidir", [(10, 20, 1, False), (7, 12, 2, True)])
def test_parameter_counts_equal_torch_nn(I, H, L, bidir):
    counts = models.param_counts(I, H, num_layers=L, bidirectional=bidir)
    for kind, cls in TORCH_LAYERS.items():
        assert counts[kind] == sum(p.numel() for p in cls(I, H, L, bidirectional=bidir)
                                   .parameters())
    assert counts["lstm"] == 4 * counts["rnn"] and counts["gru"] == 3 * counts["rnn"]
    # a pre-norm block: 4H² + 4H attention, 8H² + 5H MLP, 4H LayerNorms; + final LN, + I->H proj
    assert counts["attention"] == L * (12 * H * H + 13 * H) + 2 * H + I * H + H
    # the models' backbones agree too
    m = models.build("classifier", num_classes=2, input_size=I, backbone="gru", hidden_size=H,
                     num_layers=L, bidirectional=bidir)
    assert sum(p.numel() for p in m.backbone.parameters()) == counts["gru"]
    m = models.build("classifier", num_classes=2, input_size=I, backbone="attention",
                     hidden_size=H, num_layers=L, positional="sinusoidal")
    assert m.num_parameters() == counts["attention"] + 2 * H + 2


# -- classifier and regressor ---------------------------------------------------------------------
ENCODER_CASES = [("lstm", False, "last"), ("lstm", True, "last"), ("gru", True, "mean"),
                 ("rnn", False, "mean"), ("attention", False, "mean"),
                 ("attention", False, "last")]


@pytest.mark.parametrize("backbone,bidir,pooling", ENCODER_CASES)
def test_classifier_padding_invariance(backbone, bidir, pooling):
    m = double(models.build("classifier", num_classes=3, vocab_size=6, backbone=backbone,
                            hidden_size=8, num_layers=2, bidirectional=bidir, pooling=pooling,
                            num_heads=2))
    lengths = torch.tensor([5, 2, 4, 1])
    x = torch.randint(0, 6, (4, 5))
    out = m(x, lengths)
    garbage = torch.randint(0, 6, (4, 8))  # longer, with different tokens past each length
    keep = torch.arange(8)[None, :] < lengths[:, None]
    x_long = torch.where(keep, torch.nn.functional.pad(x, (0, 3)), garbage)
    torch.testing.assert_close(m(x_long, lengths), out, rtol=1e-12, atol=1e-12)
    # and each row alone, unpadded, gives the same logits
    for b in range(4):
        n = int(lengths[b])
        torch.testing.assert_close(m(x[b : b + 1, :n]), out[b : b + 1], rtol=1e-10, atol=1e-12)


def test_default_pooling_is_last_state_for_recurrent_and_mean_for_attention():
    kw = dict(num_classes=2, vocab_size=4, hidden_size=4, num_heads=2)
    assert models.build("classifier", backbone="gru", **kw).config["pooling"] == "last"
    m = double(models.build("classifier", backbone="attention", **kw))
    assert m.config["pooling"] == "mean"
    x, lengths = torch.randint(0, 4, (2, 5)), torch.tensor([5, 3])
    out = m.backbone(m.embedding(x), lengths)
    ref = torch.stack([out[0].mean(0), out[1, :3].mean(0)])  # mean over valid steps
    torch.testing.assert_close(m(x, lengths), m.head(ref))


@pytest.mark.parametrize("backbone", ["lstm", "attention"])
def test_regressor_float_inputs_and_padding(backbone):
    m = double(models.build("regressor", input_size=2, backbone=backbone, hidden_size=8,
                            num_heads=2))
    x = torch.randn(3, 6, 2, dtype=D64)
    lengths = torch.tensor([6, 3, 4])
    y = m(x, lengths)
    assert y.shape == (3,)
    x2 = x.clone()
    x2[1, 3:] = 5.0
    x2[2, 4:] = -5.0
    torch.testing.assert_close(m(x2, lengths), y, rtol=1e-12, atol=1e-12)
    assert (m(x2) - m(x)).abs().max() > 1e-6  # without lengths the padding counts


@pytest.mark.parametrize("backbone", ["lstm", "gru"])
def test_bidirectional_classifier_uses_backward_state_at_t1(backbone):
    H, E = 4, 3
    m = double(models.build("classifier", num_classes=2, vocab_size=5, backbone=backbone,
                            hidden_size=H, embed_size=E, bidirectional=True))
    fwd = TORCH_LAYERS[backbone](E, H, batch_first=True).double()
    bwd = TORCH_LAYERS[backbone](E, H, batch_first=True).double()
    sd = m.backbone.state_dict()
    fwd.load_state_dict({k: v for k, v in sd.items() if not k.endswith("_reverse")})
    bwd.load_state_dict({k[: -len("_reverse")]: v for k, v in sd.items()
                         if k.endswith("_reverse")})
    lengths = torch.tensor([2, 6, 4])
    x = torch.randint(0, 5, (3, 6))
    z = m.encode(x, lengths)  # (B, 2H)
    last = lambda out: out[0][0, -1]  # h at the last step of a single-row run
    for b in range(3):
        n = int(lengths[b])
        e = m.embedding(x[b : b + 1, :n])
        h_fwd = last(fwd(e))  # forward direction at t = len
        h_bwd = last(bwd(e.flip(1)))  # backward direction, run from t = len down to t = 1
        torch.testing.assert_close(z[b], torch.cat((h_fwd, h_bwd)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m(x, lengths), m.head(z))
    # the naive final state (backward direction started at the padded end) is different
    _, state = m.backbone(m.embedding(x))
    naive_bwd = (state[0] if isinstance(state, tuple) else state)[1]
    assert (naive_bwd[0] - z[0, H:]).abs().max() > 1e-6


# -- seq2seq -------------------------------------------------------------------------------------
S2S_CASES = [("lstm", None, False), ("gru", "additive", False), ("lstm", "additive", True),
             ("gru", "dot", True), ("rnn", "dot", False)]


def make_s2s(backbone, attention, bidir, V=7, H=6):
    return double(models.build("seq2seq", src_vocab=V, tgt_vocab=V, backbone=backbone,
                               hidden_size=H, attention=attention, bidirectional_encoder=bidir,
                               embed_size=5))


@pytest.mark.parametrize("backbone,attention,bidir", S2S_CASES)
def test_seq2seq_source_padding_invariance(backbone, attention, bidir):
    m = make_s2s(backbone, attention, bidir)
    src = torch.randint(0, 7, (3, 5))
    lengths = torch.tensor([5, 2, 3])
    y_in = torch.randint(0, 7, (3, 4))
    logits, attn = m(src, lengths, y_in, return_attention=True)
    assert logits.shape == (3, 4, 7)
    keep = torch.arange(9)[None, :] < lengths[:, None]
    src_long = torch.where(keep, torch.nn.functional.pad(src, (0, 4)), torch.randint(0, 7, (3, 9)))
    logits2, attn2 = m(src_long, lengths, y_in, return_attention=True)
    torch.testing.assert_close(logits2, logits, rtol=1e-12, atol=1e-12)
    if attention is None:
        assert attn is None and attn2 is None
        return
    assert attn.shape == (3, 4, 5) and attn2.shape == (3, 4, 9)
    torch.testing.assert_close(attn2[:, :, :5], attn, rtol=1e-12, atol=1e-12)
    pad = ~keep[:, None, :].expand(3, 4, 9)
    assert torch.all(attn2[pad] == 0)  # padded source positions get exactly zero weight
    torch.testing.assert_close(attn2.sum(-1), torch.ones(3, 4, dtype=D64))


@pytest.mark.parametrize("backbone,attention,bidir", S2S_CASES)
def test_seq2seq_teacher_forcing(backbone, attention, bidir):
    m = make_s2s(backbone, attention, bidir)
    src, lengths = torch.randint(0, 7, (4, 5)), torch.tensor([5, 1, 3, 4])
    T = 5
    y_in = torch.randint(0, 7, (4, T))
    gold = m(src, lengths, y_in)
    # ratio 1: step t sees the gold y_in[:, :t+1] only
    for t in range(T - 1):
        y2 = y_in.clone()
        y2[:, t + 1:] = (y2[:, t + 1:] + 1) % 7
        torch.testing.assert_close(m(src, lengths, y2)[:, : t + 1], gold[:, : t + 1])
    # ratio 0: the model's own argmax is fed back — same as gold-forcing those very tokens
    free = m(src, lengths, y_in, teacher_forcing=0.0)
    own = torch.cat((y_in[:, :1], free.argmax(-1)[:, :-1]), 1)
    torch.testing.assert_close(m(src, lengths, own), free, rtol=1e-12, atol=1e-12)
    # and greedy decoding (never stopping: no EOS id matches) emits those tokens
    tokens, attn = m.greedy(src, lengths, max_len=T, bos_id=int(y_in[0, 0]), eos_id=-1)
    y_bos = y_in.clone()
    y_bos[:, 0] = y_in[0, 0]
    free_bos = m(src, lengths, y_bos, teacher_forcing=0.0, return_attention=True)
    assert torch.equal(tokens, free_bos[0].argmax(-1))
    if attention is None:
        assert attn is None
    else:
        torch.testing.assert_close(attn, free_bos[1])
    # ratio p: per row and step, gold with probability p (coins from the generator), else argmax
    p = 0.5
    mixed = m(src, lengths, y_in, teacher_forcing=p, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    fed = y_in.clone()
    for t in range(1, T):
        coin = torch.rand(4, generator=g)
        prev = m(src, lengths, fed)[:, t - 1].argmax(-1)
        fed[:, t] = torch.where(coin < p, y_in[:, t], prev)
    torch.testing.assert_close(mixed, m(src, lengths, fed), rtol=1e-12, atol=1e-12)


def test_seq2seq_greedy_stops_at_eos_and_respects_max_len():
    m = make_s2s("gru", "additive", False)
    src, lengths = torch.randint(0, 7, (3, 4)), torch.tensor([4, 2, 3])
    with torch.no_grad():
        m.out.weight.zero_()
        m.out.bias.zero_()
        m.out.bias[2] = 10.0  # always EOS (id 2)
    tokens, attn = m.greedy(src, lengths, max_len=6, bos_id=1, eos_id=2)
    assert tokens.tolist() == [[2], [2], [2]] and attn.shape == (3, 1, 4)
    with torch.no_grad():
        m.out.bias[2] = -10.0  # never EOS
    tokens, attn = m.greedy(src, lengths, max_len=6, bos_id=1, eos_id=2)
    assert tokens.shape == (3, 6) and attn.shape == (3, 6, 4)
    assert torch.all(attn[1, :, 2:] == 0)  # row 1 has 2 valid source tokens


def test_seq2seq_bidirectional_bridge():
    m = make_s2s("gru", "dot", True)
    H = 6
    src, lengths = torch.randint(0, 7, (2, 5)), torch.tensor([3, 5])
    memory, pad, state = m.encode(src, lengths)
    assert memory.shape == (2, 5, 2 * H) and state.shape == (1, 2, H)
    assert torch.all(memory[0, 3:] == 0) and pad.tolist() == [[False] * 3 + [True] * 2,
                                                               [False] * 5]
    fwd, bwd = nn.GRU(5, H, batch_first=True).double(), nn.GRU(5, H, batch_first=True).double()
    sd = m.encoder.state_dict()
    fwd.load_state_dict({k: v for k, v in sd.items() if not k.endswith("_reverse")})
    bwd.load_state_dict({k[: -len("_reverse")]: v for k, v in sd.items()
                         if k.endswith("_reverse")})
    for b in range(2):
        e = m.src_embedding(src[b : b + 1, : int(lengths[b])])
        hf, hb = fwd(e)[1][0, 0], bwd(e.flip(1))[1][0, 0]
        s0 = torch.tanh(m.bridge_h(torch.cat((hf, hb))))  # s_0 = tanh(W_b [h→; h←] + b_b)
        torch.testing.assert_close(state[0, b], s0)


def reverse_batch(B, g, V=11, L=8, BOS=1, EOS=2):
    """Source: L symbols from 3..V-1; target: the source reversed, then EOS."""
    src = torch.randint(3, V, (B, L), generator=g)
    tgt = torch.cat((src.flip(1), torch.full((B, 1), EOS)), 1)
    y_in = torch.cat((torch.full((B, 1), BOS), tgt[:, :-1]), 1)
    return src, torch.full((B,), L), y_in, tgt


def test_seq2seq_with_attention_learns_to_reverse():
    torch.manual_seed(0)
    m = models.build("seq2seq", src_vocab=11, tgt_vocab=11, backbone="gru", hidden_size=64,
                     embed_size=32, attention="additive")
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(200):
        src, lengths, y_in, tgt = reverse_batch(64, g)
        logits = m(src, lengths, y_in)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    m.eval()
    src, lengths, y_in, tgt = reverse_batch(512, g)
    tokens, attn = m.greedy(src, lengths, max_len=9, bos_id=1, eos_id=2)
    assert tokens.shape[1] >= 8
    acc = (tokens[:, :8] == tgt[:, :8]).double().mean().item()
    print(f"reverse: greedy token accuracy {acc:.4f} after 200 steps, "
          f"{time.perf_counter() - t0:.1f} s")
    assert acc >= 0.95
    # the attention heat map is (close to) the anti-diagonal: output t looks at source L-1-t
    assert attn.shape == (512, tokens.shape[1], 8)
    peak = attn[:, :8].argmax(-1)
    assert (peak == torch.arange(7, -1, -1)).double().mean() > 0.8


def test_masked_token_loss_averages_valid_positions():
    logits = torch.randn(2, 3, 4)
    y = torch.randint(0, 4, (2, 3))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    per = -torch.log_softmax(logits, -1).gather(-1, y[..., None])[..., 0]
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    ce = ce.view_as(y)
    assert masked_mean(ce, mask).item() == pytest.approx(
        per[mask].mean().item(), rel=1e-6)
    assert math.isclose(masked_mean(ce, None).item(), per.mean().item(), rel_tol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("name,cfg", CONFIGS)
def test_models_run_on_cuda(name, cfg):
    m = models.build(name, **cfg).cuda()
    dev = torch.device("cuda")
    if name == "lm":
        x = torch.randint(0, 11, (2, 5), device=dev)
        logits, state = m(x)
        logits2, _ = m(x, state)
        loss = logits.sum() + logits2.sum()
    elif name in ("classifier", "regressor"):
        x = (torch.randint(0, 10, (3, 5), device=dev) if cfg.get("vocab_size")
             else torch.randn(3, 5, cfg["input_size"], device=dev))
        loss = m(x, torch.tensor([5, 2, 3], device=dev)).sum()
    else:
        src = torch.randint(0, 7, (3, 5), device=dev)
        lengths = torch.tensor([5, 2, 3], device=dev)
        y_in = torch.randint(0, 9, (3, 4), device=dev)
        g = torch.Generator(device=dev).manual_seed(0)
        loss = m(src, lengths, y_in, teacher_forcing=0.5, generator=g).sum()
        tokens, _ = m.greedy(src, lengths, max_len=4, bos_id=1, eos_id=2)
        assert tokens.device == dev
    loss.backward()
    assert all(p.grad is None or p.grad.device == dev for p in m.parameters())


# ---- a language model samples and scores text itself ----------------------------------------

def _tiny_lm(vocab=7, hidden=6):
    torch.manual_seed(0)
    return models.build("lm", vocab_size=vocab, backbone="lstm", hidden_size=hidden,
                        num_layers=1).eval()


def _sample(model, tok, prime, length, temperature=1.0, top_k=None, top_p=None, seed=None):
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return tok.decode(model.generate(tok.encode(prime), length, temperature, top_k, top_p, g)[0])


def test_greedy_sampling_matches_recomputing_the_whole_prefix():
    tok = CharTokenizer.from_text("abcdefg")
    model = _tiny_lm()
    text = _sample(model, tok, "abc", 12, temperature=0)
    ids = tok.encode("abc").tolist()
    with torch.no_grad():
        for _ in range(12):  # independent: no carried state, the full prefix every step
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
    assert text == tok.decode(torch.tensor(ids[3:]))
    assert _sample(model, tok, "abc", 12, top_k=1, seed=0) == text
    assert _sample(model, tok, "abc", 12, top_p=1e-9, seed=0) == text  # nucleus of one token


def test_sampling_is_seeded_and_respects_top_k_and_top_p():
    tok = CharTokenizer.from_text("abcdefg")
    model = _tiny_lm()
    s1 = _sample(model, tok, "a", 40, 1.5, seed=4)
    assert s1 == _sample(model, tok, "a", 40, 1.5, seed=4) and len(s1) == 40
    with torch.no_grad():
        first = model(tok.encode("a").view(1, -1))[0][0, -1]
    p, order = torch.softmax(first, -1).sort(descending=True)
    top2 = {tok.decode(order[:2])[i] for i in range(2)}
    nucleus = float(p[0] + p[1] / 2)  # reached inside the second token: the nucleus is the top 2
    for seed in range(10):
        assert _sample(model, tok, "a", 1, 1.0, top_k=2, seed=seed) in top2
        assert _sample(model, tok, "a", 1, 1.0, top_p=nucleus, seed=seed) in top2
    rows = model.generate(tok.encode("a").view(1, -1).repeat(3, 1), 5,
                          generator=torch.Generator().manual_seed(0))
    assert rows.shape == (3, 5)


def test_score_single_stream_equals_one_pass():
    text = shakespeare_text()[:400]
    tok = CharTokenizer.from_text(text)
    model = _tiny_lm(vocab=tok.vocab_size)
    ids = tok.encode(text)
    m = model.score(ids, seq_len=64, streams=1)
    with torch.no_grad():
        logits = model(ids[:-1].view(1, -1))[0][0]
    assert m["tokens"] == len(text) - 1
    assert m["nats"] == pytest.approx(float(F.cross_entropy(logits, ids[1:])), rel=1e-5)
    # several streams score every character too
    assert model.score(ids, seq_len=16, streams=4)["tokens"] == len(text) - 1


def test_for_task_sizes_the_model_from_the_task():
    from rnnlab.data import build_task

    task = build_task("adding", length=10)
    m = models.for_task(task, "gru", hidden_size=8)
    assert m.config["name"] == "regressor" and m.config["input_size"] == task.input_size
    assert m.config["hidden_size"] == 8 and m.config["num_layers"] == 1
    lm = models.for_task(build_task("a13"), "lstm", hidden_size=None)  # None: the default
    assert lm.config["hidden_size"] == 256 and lm.config["num_layers"] == 2


# ---- the scan backbones (minGRU, minLSTM, LRU) in every model ---------------------------------

@pytest.mark.parametrize("backbone", ["mingru", "minlstm", "lru"])
def test_scan_backbone_lm_generates_step_by_step_like_the_whole_prefix(backbone):
    torch.manual_seed(0)
    m = models.build("lm", vocab_size=7, backbone=backbone, hidden_size=8, num_layers=2).double()
    assert m.backbone.scan == "parallel"
    out = m.generate(torch.tensor([1, 2, 3]), 6, temperature=0)[0]
    assert m.backbone.scan == "parallel"  # generation ran sequentially, then restored it
    ids = [1, 2, 3]
    with torch.no_grad():
        for _ in range(6):  # no carried state: the whole prefix through the parallel scan
            ids.append(int(m(torch.tensor([ids]))[0][0, -1].argmax()))
    assert out.tolist() == ids[3:]
    json.loads(json.dumps(m.config))  # plain config
    assert models.build(**m.config).config == m.config


@pytest.mark.parametrize("backbone", ["mingru", "minlstm", "lru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_scan_backbone_encoders_read_the_last_valid_step(backbone, bidirectional):
    torch.manual_seed(0)
    m = models.build("classifier", num_classes=3, vocab_size=6, backbone=backbone,
                     hidden_size=5, bidirectional=bidirectional).double()
    x = torch.randint(0, 6, (4, 9))
    lengths = torch.tensor([9, 3, 6, 1])
    z = m.encode(x, lengths)
    for b in range(4):  # each row alone, unpadded, must give the same summary
        alone = m.encode(x[b : b + 1, : lengths[b]])
        torch.testing.assert_close(z[b : b + 1], alone, rtol=0, atol=1e-12)
    reg = models.build("regressor", input_size=2, backbone=backbone, hidden_size=4)
    assert reg(torch.randn(3, 5, 2)).shape == (3,)


def test_scan_backbones_refuse_classic_only_options():
    with pytest.raises(UserError, match="recurrent_init"):
        models.build("lm", vocab_size=5, backbone="lru", recurrent_init="orthogonal")
    with pytest.raises(UserError, match="forget_bias"):
        models.build("lm", vocab_size=5, backbone="mingru", forget_bias=1.0)
    with pytest.raises(UserError, match="seq2seq"):
        from rnnlab.data import build_task
        models.for_task(build_task("reverse"), "lru")
