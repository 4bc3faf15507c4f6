"""rnnlab.attention against explicit formulas and torch.nn.MultiheadAttention."""

import math

import pytest
import torch
from torch import nn

from rnnlab import attention as A
from rnnlab.errors import UserError

D64 = torch.float64


def reference_attention(q, k, v, causal=False, pad=None):
    """softmax(QKᵀ/√d + M)V written out with a loop over queries (no masked_softmax)."""
    T, S, d = q.shape[-2], k.shape[-2], q.shape[-1]
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    weights = torch.zeros(*q.shape[:-1], S, dtype=q.dtype)
    for t in range(T):
        scores = (q[..., t, :, None] * k.transpose(-2, -1)).sum(-2) / math.sqrt(d)  # (..., S)
        keep = torch.ones(scores.shape, dtype=torch.bool)
        if causal:
            keep[..., t + 1 + (S - T):] = False
        if pad is not None:
            keep &= ~pad.view(pad.shape[0], *([1] * (q.dim() - 3)), S)
        e = torch.where(keep, torch.exp(scores - scores.max(-1, keepdim=True).values), 0.0)
        w = e / e.sum(-1, keepdim=True)
        weights[..., t, :] = w
        out[..., t, :] = (w[..., None] * v).sum(-2)
    return out, weights


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_sdpa_equals_explicit_softmax(causal, padded, need_weights):
    B, H, T, d = 3, 2, 5, 4
    q, k, v = (torch.randn(B, H, T, d, dtype=D64) for _ in range(3))
    pad = A.padding_mask(torch.tensor([5, 3, 1]), T) if padded else None
    out, w = A.scaled_dot_product_attention(q, k, v, causal=causal, key_padding_mask=pad,
                                            need_weights=need_weights)
    ref_out, ref_w = reference_attention(q, k, v, causal, pad)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    if need_weights:
        torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=1e-12)
    else:
        assert w is None


def test_sdpa_three_dim_and_cross_lengths():
    q = torch.randn(2, 3, 4, dtype=D64)  # (B, T, d), T < S: causal is bottom-right aligned
    k, v = torch.randn(2, 6, 4, dtype=D64), torch.randn(2, 6, 5, dtype=D64)
    pad = A.padding_mask(torch.tensor([6, 4]), 6)
    for nw in (False, True):
        out, _ = A.scaled_dot_product_attention(q, k, v, causal=True, key_padding_mask=pad,
                                                need_weights=nw)
        torch.testing.assert_close(out, reference_attention(q, k, v, True, pad)[0])


def test_padding_mask():
    m = A.padding_mask(torch.tensor([3, 1]), 4)
    assert m.tolist() == [[False, False, False, True], [False, True, True, True]]


def test_fully_masked_row_gives_zeros_not_nan():
    q = k = v = torch.randn(1, 1, 3, 2)
    pad = torch.ones(1, 3, dtype=torch.bool)  # nothing to attend to
    for nw in (False, True):
        out, w = A.scaled_dot_product_attention(q, k, v, key_padding_mask=pad, need_weights=nw)
        assert torch.equal(out, torch.zeros_like(out))
        if nw:
            assert torch.equal(w, torch.zeros_like(w))


@pytest.mark.parametrize("causal", [False, True])
def test_multihead_matches_torch_multihead_attention(causal):
    D, h, B, T = 8, 2, 3, 5
    mine = A.MultiHeadSelfAttention(D, h).double()
    ref = nn.MultiheadAttention(D, h, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(mine.qkv.weight)
        ref.in_proj_bias.copy_(mine.qkv.bias)
        ref.out_proj.weight.copy_(mine.out.weight)
        ref.out_proj.bias.copy_(mine.out.bias)
    x = torch.randn(B, T, D, dtype=D64)
    pad = A.padding_mask(torch.tensor([5, 4, 2]), T)
    causal_mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None  # True = block
    ref_out, ref_w = ref(x, x, x, key_padding_mask=pad, attn_mask=causal_mask,
                         average_attn_weights=False)
    for nw in (False, True):
        out, w = mine(x, causal=causal, key_padding_mask=pad, need_weights=nw)
        torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
        if nw:
            torch.testing.assert_close(w, ref_w, rtol=1e-10, atol=1e-12)


def test_weights_sum_to_one_over_valid_keys_and_zero_on_padding():
    D, T = 8, 6
    lengths = torch.tensor([6, 4, 1])
    pad = A.padding_mask(lengths, T)
    for attn in (A.SelfAttention(D), A.MultiHeadSelfAttention(D, 4)):
        _, w = attn(torch.randn(3, T, D), key_padding_mask=pad, need_weights=True)  # (B,h,T,T)
        assert torch.all(w[pad[:, None, None, :].expand_as(w)] == 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    # the stack's layers too, with lengths
    stack = A.AttentionStack(D, num_layers=2, num_heads=2, causal=False)
    _, ws = stack(torch.randn(3, T, D), lengths, need_weights=True)
    for w in ws:
        assert torch.all(w[pad[:, None, None, :].expand_as(w)] == 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


def test_sinusoidal_closed_form_and_learned_positions():
    pe = A.SinusoidalPositionalEncoding(6, max_len=10)
    x = torch.zeros(1, 10, 6)
    y = pe(x)[0]
    for t in (0, 3, 9):
        for i in range(3):
            w = 1.0 / 10000 ** (2 * i / 6)
            assert y[t, 2 * i].item() == pytest.approx(math.sin(t * w), abs=1e-6)
            assert y[t, 2 * i + 1].item() == pytest.approx(math.cos(t * w), abs=1e-6)
    assert not list(pe.parameters()) and "pe" not in pe.state_dict()
    odd = A.SinusoidalPositionalEncoding(5, max_len=4)(torch.zeros(1, 4, 5))
    assert odd.shape == (1, 4, 5)
    lp = A.LearnedPositionalEncoding(4, max_len=3)
    torch.testing.assert_close(lp(torch.ones(2, 3, 4)), 1 + lp.weight.expand(2, 3, 4))
    with pytest.raises(UserError, match="max_len"):
        lp(torch.zeros(1, 4, 4))


def test_transformer_block_is_pre_norm_residual():
    blk = A.TransformerBlock(8, num_heads=2).double()
    x = torch.randn(2, 4, 8, dtype=D64)
    y, _ = blk(x, causal=True)
    a, _ = blk.attn(blk.ln1(x), causal=True)
    x1 = x + a  # x + Attn(LN(x))
    h = blk.mlp[0](blk.ln2(x1))
    ref = x1 + blk.mlp[2](0.5 * h * (1 + torch.erf(h / math.sqrt(2))))  # x + W₂ GELU(W₁ LN(x))
    torch.testing.assert_close(y, ref)


def test_attention_stack_causal_by_perturbation():
    stack = A.AttentionStack(8, num_layers=2, num_heads=2, causal=True,
                             positional="sinusoidal").double()
    x = torch.randn(2, 7, 8, dtype=D64)
    y = stack(x)
    for t in range(7):
        x2 = x.clone()
        x2[:, t + 1:] += torch.randn_like(x2[:, t + 1:])
        y2 = stack(x2)
        assert (y2[:, : t + 1] - y[:, : t + 1]).abs().max() <= 1e-12
        if t < 6:
            assert (y2[:, t + 1:] - y[:, t + 1:]).abs().max() > 1e-6
    # non-causal: the first output sees the last input
    y_nc = stack(x, causal=False)
    x3 = x.clone()
    x3[:, -1] += torch.randn_like(x3[:, -1])  # (a constant shift would vanish in LayerNorm)
    assert (stack(x3, causal=False)[:, 0] - y_nc[:, 0]).abs().max() > 1e-6


def test_additive_attention_matches_formula():
    att = A.AdditiveAttention(query_size=3, key_size=5, attn_size=4).double()
    q, keys = torch.randn(2, 3, dtype=D64), torch.randn(2, 6, 5, dtype=D64)
    pad = A.padding_mask(torch.tensor([6, 2]), 6)
    ctx, w = att(q, keys, key_padding_mask=pad)
    Wq, Wk, bk, v = att.w_q.weight, att.w_k.weight, att.w_k.bias, att.v.weight[0]
    for b in range(2):
        n = 6 if b == 0 else 2
        e = torch.stack([v @ torch.tanh(Wq @ q[b] + Wk @ keys[b, s] + bk) for s in range(n)])
        alpha = torch.softmax(e, 0)  # e_s = vᵀ tanh(W_q q + W_k k_s + b)
        torch.testing.assert_close(w[b, :n], alpha)
        assert torch.all(w[b, n:] == 0)
        torch.testing.assert_close(ctx[b], alpha @ keys[b, :n])
    ctx2, w2 = att(q, keys, key_padding_mask=pad, projected_keys=att.project_keys(keys))
    torch.testing.assert_close(ctx2, ctx)


@pytest.mark.parametrize("general,scaled", [(False, False), (False, True), (True, False)])
def test_dot_attention_matches_formula(general, scaled):
    Dk = 5 if general else 3
    att = A.DotAttention(3, Dk, general=general, scaled=scaled).double()
    q, keys = torch.randn(2, 3, dtype=D64), torch.randn(2, 4, Dk, dtype=D64)
    values = torch.randn(2, 4, 7, dtype=D64)
    pad = A.padding_mask(torch.tensor([4, 3]), 4)
    ctx, w = att(q, keys, values, key_padding_mask=pad)
    for b in range(2):
        n = 4 if b == 0 else 3
        k = keys[b, :n] @ att.w.weight.T if general else keys[b, :n]
        e = k @ q[b] / (math.sqrt(3) if scaled else 1.0)  # e_s = qᵀ k_s (/√d) or qᵀ W k_s
        alpha = torch.softmax(e, 0)
        torch.testing.assert_close(w[b, :n], alpha)
        assert torch.all(w[b, n:] == 0)
        torch.testing.assert_close(ctx[b], alpha @ values[b, :n])


def test_dot_attention_needs_equal_sizes_unless_general():
    with pytest.raises(ValueError, match="general"):
        A.DotAttention(3, 4)


def test_explicit_weights_path_gradcheck():
    q, k, v = (torch.randn(1, 3, 2, dtype=D64, requires_grad=True) for _ in range(3))
    pad = torch.tensor([[False, False, True]])
    assert torch.autograd.gradcheck(
        lambda q, k, v: A.scaled_dot_product_attention(q, k, v, causal=True,
                                                       key_padding_mask=pad,
                                                       need_weights=True)[0], (q, k, v))
