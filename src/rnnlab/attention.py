"""Attention: scaled dot-product self-attention (causal and padding masks), positional encodings,
a small pre-norm Transformer stack, and the additive / dot attention of seq2seq decoders.

Masks. A *key padding mask* is a (B, S) bool tensor that is True where a key is padding (the
convention of ``torch.nn.MultiheadAttention``); padded keys get exactly zero weight. A *causal*
mask lets query t see keys ≤ t only. Internally both are combined into one bool "allowed" mask
(True = may attend). ``padding_mask(lengths, T)`` builds a key padding mask from lengths.

Self-attention (Vaswani et al., 2017):   Attention(Q, K, V) = softmax(QKᵀ/√d_k + M) V,
with M = 0 where allowed and −∞ elsewhere; the path from any input to any output is one hop.

Seq2seq attention over encoder states k_1..k_S for a decoder query q (one step):
  additive (Bahdanau et al., 2015):  e_s = vᵀ tanh(W_q q + W_k k_s)
  dot (Luong et al., 2015):          e_s = qᵀ k_s  (scaled: /√d;  general: qᵀ W k_s)
  α = softmax(e) over valid s,  context = Σ_s α_s v_s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import lengths_to_mask

POSITIONAL = ("learned", "sinusoidal")


# -- masks -------------------------------------------------------------------------------------
def padding_mask(lengths: Tensor, T: int) -> Tensor:
    """(B,) valid lengths -> (B, T) bool, True at padded positions t ≥ length."""
    return ~lengths_to_mask(lengths, T)  # pad[b, t] = t ≥ len_b


def _allowed(T: int, S: int, causal: bool, key_padding_mask: Tensor | None, q_dim: int,
             device) -> Tensor | None:
    """Bool mask broadcastable to (..., T, S): True where query t may attend to key s."""
    allowed = None
    if causal:  # query t sees keys s ≤ t + (S − T) (bottom-right aligned when S > T)
        allowed = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)
    if key_padding_mask is not None:
        B = key_padding_mask.shape[0]
        valid = (~key_padding_mask.bool()).view(B, *([1] * (q_dim - 2)), S)  # (B, 1.., 1, S)
        allowed = valid if allowed is None else allowed & valid
    return allowed


def masked_softmax(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """softmax over the last axis restricted to allowed entries (exact zeros elsewhere); a row with
    no allowed entry gets all-zero weights instead of NaN."""
    if allowed is None:
        return torch.softmax(scores, -1)
    dead = ~allowed.any(-1, keepdim=True)  # rows with nothing to attend to
    allowed = allowed | dead
    w = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)  # α = e^s / Σ_allowed e^s
    return w.masked_fill(dead, 0.0) if bool(dead.any()) else w


# -- scaled dot-product attention ---------------------------------------------------------------
def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False,
                                 key_padding_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """softmax(QKᵀ/√d_k + M) V for q (..., T, d_k), k (..., S, d_k), v (..., S, d_v).

    Returns (output (..., T, d_v), weights (..., T, S) or None). Without ``need_weights`` it runs
    ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels); with it, the same
    math explicitly, so the weights can be returned (before dropout). ``key_padding_mask``
    (B, S) is True at padded keys, which get exactly zero weight. A query with no key to attend
    to (possible only with an all-padding row) outputs zeros.
    """
    T, S = q.shape[-2], k.shape[-2]
    allowed = _allowed(T, S, causal, key_padding_mask, q.dim(), q.device)
    if need_weights:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # QKᵀ/√d_k, (..., T, S)
        w = masked_softmax(scores, allowed)  # α = softmax(QKᵀ/√d_k + M)
        w_drop = F.dropout(w, dropout_p) if dropout_p > 0 else w
        return w_drop @ v, w  # Σ_s α_ts v_s
    if allowed is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), None
    if causal and key_padding_mask is None and T == S:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True), None
    dead = ~allowed.any(-1, keepdim=True)
    has_dead = bool(dead.any())
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | dead if has_dead else allowed,
                                         dropout_p=dropout_p)
    return (out.masked_fill(dead, 0.0) if has_dead else out), None


class MultiHeadSelfAttention(nn.Module):
    """h heads of softmax(QKᵀ/√d_k + M)V over one sequence x (B, T, D), d_k = D / h.

    Q, K, V = x W_Qᵀ, x W_Kᵀ, x W_Vᵀ split into h heads; output = concat(heads) W_Oᵀ.
    forward(x, causal=False, key_padding_mask=None, need_weights=False) ->
    (out (B, T, D), weights (B, h, T, T) or None).
    """

    def __init__(self, d_model: int, num_heads: int = 1, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.dropout = d_model, num_heads, float(dropout)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # [Q; K; V] = x W_qkvᵀ + b
        self.out = nn.Linear(d_model, d_model, bias=bias)  # y = concat(head_1..h) W_Oᵀ + b

    def forward(self, x: Tensor, *, causal: bool = False, key_padding_mask: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        B, T, D = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).view(B, T, 3, h, D // h).permute(2, 0, 3, 1, 4)  # (B, h, T, d_k)
        o, w = scaled_dot_product_attention(
            q, k, v, causal=causal, key_padding_mask=key_padding_mask,
            dropout_p=self.dropout if self.training else 0.0, need_weights=need_weights)
        return self.out(o.transpose(1, 2).reshape(B, T, D)), w


class SelfAttention(MultiHeadSelfAttention):
    """Single-head self-attention: softmax(QKᵀ/√D + M)V with D = d_model."""

    def __init__(self, d_model: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(d_model, 1, dropout, bias)


# -- positional encodings -----------------------------------------------------------------------
class SinusoidalPositionalEncoding(nn.Module):
    """x + PE with PE[t, 2i] = sin(t / 10000^{2i/D}), PE[t, 2i+1] = cos(t / 10000^{2i/D}).

    No parameters; the table (max_len, D) is a non-persistent buffer (not in the state dict).
    """

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        t = torch.arange(max_len, dtype=torch.float64)[:, None]
        inv = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64)
                        / d_model)  # 1 / 10000^{2i/D}
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(t * inv)
        pe[:, 1::2] = torch.cos(t * inv)[:, : d_model // 2]
        self.register_buffer("pe", pe.to(torch.get_default_dtype()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[-2]
        _check_len(T, self.max_len)
        return x + self.pe[:T].to(x.dtype)  # x_t + PE_t


class LearnedPositionalEncoding(nn.Module):
    """x + P[t], P a learned (max_len, D) table, P ~ N(0, 0.02²)."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[-2]
        _check_len(T, self.max_len)
        return x + self.weight[:T]  # x_t + P_t


def _check_len(T: int, max_len: int) -> None:
    if T > max_len:
        from .errors import UserError

        raise UserError(f"sequence length {T} exceeds the model's max_len={max_len} "
                        "(build the model with a larger max_len)")


def positional_encoding(kind: str | None, d_model: int, max_len: int) -> nn.Module | None:
    """'learned' | 'sinusoidal' | None -> the encoding module (None: no positions)."""
    if kind is None:
        return None
    if kind == "learned":
        return LearnedPositionalEncoding(d_model, max_len)
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    raise ValueError(f"unknown positional encoding {kind!r}; choose from {', '.join(POSITIONAL)}")


# -- Transformer blocks -------------------------------------------------------------------------
class TransformerBlock(nn.Module):
    """Pre-norm block:  x ← x + Attn(LN(x));  x ← x + MLP(LN(x)),  MLP(u) = W₂ GELU(W₁ u)."""

    def __init__(self, d_model: int, num_heads: int = 4, dropout: float = 0.0,
                 mlp_ratio: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, num_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, causal: bool = True, key_padding_mask: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        a, w = self.attn(self.ln1(x), causal=causal, key_padding_mask=key_padding_mask,
                         need_weights=need_weights)
        x = x + self.drop(a)  # x + Attn(LN(x))
        x = x + self.drop(self.mlp(self.ln2(x)))  # x + MLP(LN(x))
        return x, w


class AttentionStack(nn.Module):
    """The "attention" backbone: positions, then L pre-norm Transformer blocks, then LayerNorm.

    Input (B, T, D) -> output (B, T, D), D = d_model (also ``hidden_size``). ``causal=True``: output
    t depends on inputs ≤ t only (language models). ``lengths`` (B,) masks padded keys, so appending
    padding never changes a valid output. ``positional``: "learned", "sinusoidal" or None.

    forward(x, lengths=None, *, key_padding_mask=None, causal=None, need_weights=False)
    -> out, or (out, [weights (B, h, T, T) per layer]) when need_weights.
    """

    mode = "attention"

    def __init__(self, d_model: int, num_layers: int = 2, num_heads: int = 4,
                 dropout: float = 0.0, causal: bool = True, positional: str | None = "learned",
                 max_len: int = 1024, mlp_ratio: int = 4):
        super().__init__()
        self.d_model = self.hidden_size = d_model
        self.num_layers, self.num_heads, self.causal = num_layers, num_heads, causal
        self.positional, self.max_len = positional, max_len
        self.pos = positional_encoding(positional, d_model, max_len)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, dropout, mlp_ratio)
                                    for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, lengths: Tensor | None = None, *,
                key_padding_mask: Tensor | None = None, causal: bool | None = None,
                need_weights: bool = False):
        causal = self.causal if causal is None else causal
        if key_padding_mask is None and lengths is not None:
            key_padding_mask = padding_mask(lengths.to(x.device), x.shape[1])
        if self.pos is not None:
            x = self.pos(x)  # x_t + pos_t
        x = self.drop(x)
        weights = []
        for block in self.blocks:
            x, w = block(x, causal=causal, key_padding_mask=key_padding_mask,
                         need_weights=need_weights)
            weights.append(w)
        x = self.ln_f(x)
        return (x, weights) if need_weights else x

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, num_layers={self.num_layers}, "
                f"num_heads={self.num_heads}, causal={self.causal}, positional={self.positional!r}")


# -- seq2seq attention (one decoder query against the encoder states) -------------------------
class AdditiveAttention(nn.Module):
    """Bahdanau: e_s = vᵀ tanh(W_q q + W_k k_s + b), α = softmax(e), context = Σ_s α_s v_s.

    forward(query (B, Dq), keys (B, S, Dk), values=None (= keys), key_padding_mask=None,
    projected_keys=None) -> (context (B, Dv), weights (B, S)). ``project_keys(keys)`` computes
    W_k k + b once per source, to pass as ``projected_keys`` at every decoder step.
    """

    def __init__(self, query_size: int, key_size: int, attn_size: int | None = None):
        super().__init__()
        attn_size = attn_size or query_size
        self.w_q = nn.Linear(query_size, attn_size, bias=False)  # W_q
        self.w_k = nn.Linear(key_size, attn_size)  # W_k, b
        self.v = nn.Linear(attn_size, 1, bias=False)  # v

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.w_k(keys)  # W_k k_s + b, (B, S, A)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor | None = None,
                key_padding_mask: Tensor | None = None,
                projected_keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        pk = self.project_keys(keys) if projected_keys is None else projected_keys
        e = self.v(torch.tanh(self.w_q(query)[:, None, :] + pk)).squeeze(-1)  # e_s, (B, S)
        return _attend(e, keys if values is None else values, key_padding_mask)


class DotAttention(nn.Module):
    """Luong: e_s = qᵀ k_s (dot), qᵀ k_s / √d (scaled=True), qᵀ W k_s (general=True).

    forward(query (B, Dq), keys (B, S, Dk), values=None (= keys), key_padding_mask=None)
    -> (context (B, Dv), weights (B, S)). Plain dot needs Dq = Dk; general works for any sizes.
    """

    def __init__(self, query_size: int, key_size: int | None = None, *, general: bool = False,
                 scaled: bool = False):
        super().__init__()
        key_size = key_size or query_size
        if not general and key_size != query_size:
            raise ValueError(f"dot attention needs query_size == key_size ({query_size} != "
                             f"{key_size}); use general=True")
        self.general, self.scaled = general, scaled
        self.w = nn.Linear(key_size, query_size, bias=False) if general else None  # W
        self.scale = 1.0 / math.sqrt(query_size) if scaled else 1.0

    def forward(self, query: Tensor, keys: Tensor, values: Tensor | None = None,
                key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        k = self.w(keys) if self.w is not None else keys  # W k_s (general) or k_s
        e = (k @ query[:, :, None]).squeeze(-1) * self.scale  # e_s = qᵀ k_s (/√d), (B, S)
        return _attend(e, keys if values is None else values, key_padding_mask)


def _attend(e: Tensor, values: Tensor, key_padding_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """α = softmax(e) over valid keys (exact zeros on padding); context = Σ_s α_s v_s."""
    allowed = None if key_padding_mask is None else ~key_padding_mask.bool()
    alpha = masked_softmax(e, allowed)  # (B, S)
    return (alpha[:, None, :] @ values).squeeze(1), alpha  # (B, Dv), (B, S)
