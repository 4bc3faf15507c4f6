"""Task models over a swappable backbone: LanguageModel, Classifier, Regressor, Seq2Seq.

Every model takes its backbone by name — "rnn", "lstm", "gru" (rnnlab.RNN/LSTM/GRU, written from
the equations) or "attention" (a pre-norm Transformer stack, ``rnnlab.attention.AttentionStack``)
— and plain sizes, keeps them in ``.config`` (JSON-able, with "name"), so that
``build(**model.config)`` rebuilds the same architecture, exposes ``.backbone`` and
``num_parameters()``.

    build("lm", vocab_size=65, backbone="lstm", hidden_size=256)
    build("classifier", num_classes=2, vocab_size=10, backbone="gru", bidirectional=True)
    build("regressor", input_size=2, backbone="lstm", hidden_size=64)
    build("seq2seq", src_vocab=11, tgt_vocab=11, backbone="gru", attention="additive")

Mistakes in names or sizes raise ``rnnlab.errors.UserError`` listing the valid choices.
"""

from __future__ import annotations

import inspect
import numbers

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import layers
from .attention import (
    POSITIONAL,
    AdditiveAttention,
    AttentionStack,
    DotAttention,
    TransformerBlock,
    padding_mask,
)
from .errors import UserError

RECURRENT = ("rnn", "lstm", "gru")
BACKBONES = (*RECURRENT, "attention")
SEQ2SEQ_ATTENTION = (None, "additive", "dot")
_LAYERS = {"rnn": layers.RNN, "lstm": layers.LSTM, "gru": layers.GRU}


# -- validation (every mistake a user can make -> UserError) -----------------------------------
def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) if c is None else str(c) for c in choices)
        raise UserError(f"unknown {name} {value!r}; choose from {shown}")


def _check_backbone_options(backbone, hidden_size, num_layers, dropout, num_heads, max_len,
                            forget_bias, recurrent_init, spectral_radius, nonlinearity,
                            positional, allowed=BACKBONES) -> None:
    _choice("backbone", backbone, allowed)
    _positive_int("hidden_size", hidden_size)
    _positive_int("num_layers", num_layers)
    if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
            or not 0 <= dropout < 1):
        raise UserError(f"dropout must be a number in [0, 1), got {dropout!r}")
    _choice("recurrent_init", recurrent_init, ("default", "orthogonal"))
    _choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    if spectral_radius is not None and (isinstance(spectral_radius, bool) or not isinstance(
            spectral_radius, numbers.Real) or not spectral_radius > 0):
        raise UserError(f"spectral_radius must be a positive number, got {spectral_radius!r}")
    if forget_bias is not None and (isinstance(forget_bias, bool)
                                    or not isinstance(forget_bias, numbers.Real)):
        raise UserError(f"forget_bias must be a number, got {forget_bias!r}")
    if forget_bias is not None and backbone != "lstm":
        raise UserError(f"forget_bias applies to the lstm backbone only, not {backbone}")
    if nonlinearity != "tanh" and backbone != "rnn":
        raise UserError(f"nonlinearity applies to the rnn backbone only, not {backbone}")
    if backbone == "attention":
        _positive_int("num_heads", num_heads)
        _positive_int("max_len", max_len)
        if hidden_size % num_heads:
            raise UserError(f"hidden_size ({hidden_size}) must be divisible by num_heads "
                            f"({num_heads}) for the attention backbone")
        _choice("positional", positional, POSITIONAL)
        if recurrent_init != "default" or spectral_radius is not None:
            raise UserError("recurrent_init and spectral_radius apply to recurrent backbones "
                            "(rnn, lstm, gru), not attention")


def _recurrent(backbone: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
               bidirectional: bool, forget_bias, recurrent_init, spectral_radius,
               nonlinearity) -> layers.RNNBase:
    """An rnnlab.RNN/LSTM/GRU, batch-first, with rnnlab's init options."""
    kw = {"recurrent_init": recurrent_init, "spectral_radius": spectral_radius}
    if backbone == "lstm":
        kw["forget_bias"] = forget_bias
    if backbone == "rnn":
        kw["nonlinearity"] = nonlinearity
    return _LAYERS[backbone](input_size, hidden_size, num_layers, batch_first=True,
                             dropout=dropout if num_layers > 1 else 0.0,
                             bidirectional=bidirectional, **kw)


def _plain(v):
    """A config value as a plain JSON type (numpy / torch scalars -> int, float, bool)."""
    if isinstance(v, bool | str) or v is None:
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return bool(v) if hasattr(v, "dtype") and v.dtype == bool else v


class _Model(nn.Module):
    """Shared bits: the config, the parameter count."""

    name = ""

    def _set_config(self, frame_locals: dict) -> None:
        params = inspect.signature(type(self).__init__).parameters
        cfg = {k: _plain(frame_locals[k]) for k in params if k != "self"}
        self.config = {"name": self.name, **cfg}

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (tied tensors counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


# -- language model ------------------------------------------------------------------------------
class LanguageModel(_Model):
    """Next token at every step: embedding -> backbone -> linear, logits (B, T, V).

    Recurrent backbones: forward(x, state) continues from ``state`` (h, or (h, c) for the LSTM)
    and returns the final state, for stateful truncated BPTT (the caller detaches it between
    chunks). Attention backbone: causal self-attention over the chunk, positions "learned" or
    "sinusoidal" up to ``max_len``; its state is always None. ``tie_weights`` shares the
    embedding matrix with the output layer (needs embed_size == hidden_size).
    """

    name = "lm"

    def __init__(self, vocab_size: int, backbone: str = "lstm", hidden_size: int = 256,
                 num_layers: int = 2, embed_size: int | None = None, dropout: float = 0.0,
                 tie_weights: bool = False, num_heads: int = 4, max_len: int = 1024,
                 forget_bias: float | None = None, recurrent_init: str = "default",
                 spectral_radius: float | None = None, nonlinearity: str = "tanh",
                 positional: str = "learned"):
        super().__init__()
        _positive_int("vocab_size", vocab_size)
        _check_backbone_options(backbone, hidden_size, num_layers, dropout, num_heads, max_len,
                                forget_bias, recurrent_init, spectral_radius, nonlinearity,
                                positional)
        embed_size = hidden_size if embed_size is None else _positive_int("embed_size", embed_size)
        if tie_weights and embed_size != hidden_size:
            raise UserError(f"tie_weights needs embed_size == hidden_size, got embed_size="
                            f"{embed_size} and hidden_size={hidden_size}")
        self._set_config(locals())
        self.embedding = nn.Embedding(vocab_size, embed_size)  # e_t = E[x_t], E ~ N(0, 1)
        if tie_weights:  # E is also the output layer: small, like nn.Linear's, not N(0, 1)
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.drop = nn.Dropout(dropout)
        if backbone == "attention":
            self.in_proj = (nn.Linear(embed_size, hidden_size) if embed_size != hidden_size
                            else None)
            self.backbone = AttentionStack(hidden_size, num_layers, num_heads, dropout,
                                           causal=True, positional=positional, max_len=max_len)
        else:
            self.in_proj = None
            self.backbone = _recurrent(backbone, embed_size, hidden_size, num_layers, dropout,
                                       False, forget_bias, recurrent_init, spectral_radius,
                                       nonlinearity)
        self.decoder = nn.Linear(hidden_size, vocab_size)  # logits_t = W h_t + b
        if tie_weights:
            self.decoder.weight = self.embedding.weight  # W = E (one shared tensor)

    def forward(self, x: Tensor, state=None):
        """x (B, T) long -> (logits (B, T, V), state)."""
        e = self.drop(self.embedding(x))  # (B, T, E)
        if isinstance(self.backbone, AttentionStack):
            if state is not None:
                raise ValueError("the attention language model carries no state across chunks")
            if self.in_proj is not None:
                e = self.in_proj(e)
            h = self.backbone(e)  # causal: h_t depends on x_≤t only
        else:
            h, state = self.backbone(e, state)  # h_t = f(h_{t-1}, e_t)
        return self.decoder(self.drop(h)), state


# -- many-to-one: classifier and regressor ----------------------------------------------------
class _Encoder(_Model):
    """Encodes a sequence (token ids or float features) into one vector per row (B, D·H).

    pooling=None picks "last" for recurrent backbones and "mean" for attention (recorded in
    .config). pooling="last": the final state — for a bidirectional recurrent layer over packed
    sequences [forward h at the last valid step; backward h at t = 1] (the h_n rnnlab/torch
    layers return for a PackedSequence); for attention, the output at the last valid step.
    pooling="mean": the mean of the outputs over valid steps (padding excluded).
    """

    def _build_encoder(self, vocab_size, input_size, backbone, hidden_size, num_layers,
                       bidirectional, pooling, embed_size, dropout, num_heads, max_len,
                       forget_bias, recurrent_init, spectral_radius, nonlinearity, positional):
        if (vocab_size is None) == (input_size is None):
            raise UserError("give exactly one of vocab_size (token ids) or input_size "
                            "(float features)")
        _check_backbone_options(backbone, hidden_size, num_layers, dropout, num_heads, max_len,
                                forget_bias, recurrent_init, spectral_radius, nonlinearity,
                                positional)
        _choice("pooling", pooling, (None, "last", "mean"))
        if bidirectional and backbone == "attention":
            raise UserError("bidirectional applies to recurrent backbones (rnn, lstm, gru); the "
                            "attention backbone already sees the whole sequence")
        if vocab_size is not None:
            _positive_int("vocab_size", vocab_size)
            in_size = hidden_size if embed_size is None else _positive_int("embed_size",
                                                                             embed_size)
            self.embedding = nn.Embedding(vocab_size, in_size)
        else:
            in_size = _positive_int("input_size", input_size)
            self.embedding = None
        self.drop = nn.Dropout(dropout)
        self.pooling = pooling or ("mean" if backbone == "attention" else "last")
        self.config["pooling"] = self.pooling
        if backbone == "attention":
            self.in_proj = nn.Linear(in_size, hidden_size) if in_size != hidden_size else None
            self.backbone = AttentionStack(hidden_size, num_layers, num_heads, dropout,
                                           causal=False, positional=positional, max_len=max_len)
        else:
            self.in_proj = None
            self.backbone = _recurrent(backbone, in_size, hidden_size, num_layers, dropout,
                                       bidirectional, forget_bias, recurrent_init,
                                       spectral_radius, nonlinearity)
        return hidden_size * (2 if bidirectional else 1)

    def encode(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T) long or (B, T, F) float, lengths (B,) -> (B, D·H)."""
        B, T = x.shape[0], x.shape[1]
        u = self.drop(self.embedding(x)) if self.embedding is not None else x  # (B, T, I)
        if lengths is not None:
            lengths = torch.as_tensor(lengths).to(torch.long)
            if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
                raise ValueError(f"lengths must be (B,) = ({B},) with values in [1, {T}]")
        if isinstance(self.backbone, AttentionStack):
            return self._encode_attention(u, lengths)
        return self._encode_recurrent(u, lengths)

    def _encode_attention(self, u: Tensor, lengths: Tensor | None) -> Tensor:
        if self.in_proj is not None:
            u = self.in_proj(u)
        B, T = u.shape[:2]
        lengths = (torch.full((B,), T, dtype=torch.long) if lengths is None else lengths)
        lengths = lengths.to(u.device)
        out = self.backbone(u, lengths)  # (B, T, H), padded keys masked
        if self.pooling == "last":
            return out[torch.arange(B, device=u.device), lengths - 1]  # y_{len}
        valid = (~padding_mask(lengths, T)).to(out.dtype)[:, :, None]  # (B, T, 1)
        return (out * valid).sum(1) / lengths[:, None].to(out.dtype)  # Σ_valid y_t / len

    def _encode_recurrent(self, u: Tensor, lengths: Tensor | None) -> Tensor:
        rnn = self.backbone
        B, T = u.shape[:2]
        if lengths is None:
            out, state = rnn(u)  # out (B, T, D·H)
        else:
            packed = pack_padded_sequence(u, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            out, state = rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # zeros at pad
        if self.pooling == "mean":
            n = (torch.full((B,), T) if lengths is None else lengths).to(out.device, out.dtype)
            return out.sum(1) / n[:, None]  # Σ_valid y_t / len (padding outputs are zero)
        h_n = state[0] if isinstance(state, tuple) else state  # (L·D, B, H)
        D = rnn.num_directions
        last = h_n.view(rnn.num_layers, D, B, rnn.hidden_size)[-1]  # top layer, (D, B, H)
        return last.permute(1, 0, 2).reshape(B, D * rnn.hidden_size)  # [h→_len ; h←_1]


class Classifier(_Encoder):
    """Many-to-one classification: x (B, T) ids or (B, T, F) features -> logits (B, C)."""

    name = "classifier"

    def __init__(self, num_classes: int, vocab_size: int | None = None,
                 input_size: int | None = None, backbone: str = "lstm", hidden_size: int = 128,
                 num_layers: int = 1, bidirectional: bool = False, pooling: str | None = None,
                 embed_size: int | None = None, dropout: float = 0.0, num_heads: int = 4,
                 max_len: int = 1024, forget_bias: float | None = None,
                 recurrent_init: str = "default", spectral_radius: float | None = None,
                 nonlinearity: str = "tanh", positional: str = "learned"):
        super().__init__()
        _positive_int("num_classes", num_classes)
        self._set_config(locals())
        width = self._build_encoder(vocab_size, input_size, backbone, hidden_size, num_layers,
                                    bidirectional, pooling, embed_size, dropout, num_heads,
                                    max_len, forget_bias, recurrent_init, spectral_radius,
                                    nonlinearity, positional)
        self.head = nn.Linear(width, num_classes)  # logits = W z + b

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.drop(self.encode(x, lengths)))


class Regressor(_Encoder):
    """Many-to-one regression (the adding problem): x (B, T, F) float -> (B,)."""

    name = "regressor"

    def __init__(self, input_size: int, backbone: str = "lstm", hidden_size: int = 128,
                 num_layers: int = 1, bidirectional: bool = False, pooling: str | None = None,
                 dropout: float = 0.0, num_heads: int = 4, max_len: int = 1024,
                 forget_bias: float | None = None, recurrent_init: str = "default",
                 spectral_radius: float | None = None, nonlinearity: str = "tanh",
                 positional: str = "learned"):
        super().__init__()
        self._set_config(locals())
        width = self._build_encoder(None, input_size, backbone, hidden_size, num_layers,
                                    bidirectional, pooling, None, dropout, num_heads, max_len,
                                    forget_bias, recurrent_init, spectral_radius, nonlinearity,
                                    positional)
        self.head = nn.Linear(width, 1)  # ŷ = w·z + b

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.drop(self.encode(x, lengths))).squeeze(-1)


# -- sequence to sequence ------------------------------------------------------------------------
class Seq2Seq(_Model):
    """Encoder-decoder over tokens, with or without attention.

    Encoder: an rnnlab RNN/LSTM/GRU (``backbone``), uni- or bidirectional, run over the packed
    source, so its final states are those at each row's last valid token (and, backward, at s = 1).
    Bridge: the decoder (same cell type, same num_layers, unidirectional) starts from the encoder's
    final state; for a bidirectional encoder each layer's [h→; h←] is mapped to H by
    s_0 = tanh(W_b [h→; h←] + b_b) (LSTM cell state: c_0 = W_c [c→; c←] + b_c, no tanh).

    Without attention the decoder sees only that final state (the fixed-context bottleneck):
    s_t = Cell(E y_{t-1}, s_{t-1}),  logits_t = W_y s_t.
    With attention (Luong et al., 2015, global attention with input feeding):
    s_t = Cell([E y_{t-1}; c_{t-1}], s_{t-1})       (c_0 = 0: the previous step's context is fed)
    (c_t, α_t) = Attn(query = s_t (top layer), keys = encoder outputs, padded source masked)
    h̃_t = tanh(W_o [s_t; c_t] + b_o),  logits_t = W_y h̃_t.
    "additive": e_s = vᵀ tanh(W_q s_t + W_k k_s); "dot": e_s = s_tᵀ k_s / √H, or the general
    form s_tᵀ W k_s / √H when the key width differs from H (bidirectional encoder).
    """

    name = "seq2seq"

    def __init__(self, src_vocab: int, tgt_vocab: int, backbone: str = "lstm",
                 hidden_size: int = 128, num_layers: int = 1, attention: str | None = None,
                 bidirectional_encoder: bool = False, embed_size: int | None = None,
                 dropout: float = 0.0, forget_bias: float | None = None,
                 recurrent_init: str = "default", spectral_radius: float | None = None,
                 nonlinearity: str = "tanh"):
        super().__init__()
        _positive_int("src_vocab", src_vocab)
        _positive_int("tgt_vocab", tgt_vocab)
        _check_backbone_options(backbone, hidden_size, num_layers, dropout, 1, 1, forget_bias,
                                recurrent_init, spectral_radius, nonlinearity, None,
                                allowed=RECURRENT)
        _choice("attention", attention, SEQ2SEQ_ATTENTION)
        E = hidden_size if embed_size is None else _positive_int("embed_size", embed_size)
        self._set_config(locals())
        H, L = hidden_size, num_layers
        D = 2 if bidirectional_encoder else 1
        self.hidden_size, self.num_layers, self.num_directions = H, L, D
        rec = (forget_bias, recurrent_init, spectral_radius, nonlinearity)
        self.src_embedding = nn.Embedding(src_vocab, E)
        self.tgt_embedding = nn.Embedding(tgt_vocab, E)
        self.drop = nn.Dropout(dropout)
        self.encoder = _recurrent(backbone, E, H, L, dropout, bidirectional_encoder, *rec)
        self.lstm = backbone == "lstm"
        if bidirectional_encoder:
            self.bridge_h = nn.Linear(2 * H, H)  # s_0 = tanh(W_b [h→; h←] + b_b)
            self.bridge_c = nn.Linear(2 * H, H) if self.lstm else None  # c_0 = W_c [c→; c←] + b
        else:
            self.bridge_h = self.bridge_c = None
        self.attention_kind = attention
        K = D * H  # key / context width
        self.decoder = _recurrent(backbone, E + (K if attention else 0), H, L, dropout, False,
                                  *rec)
        if attention == "additive":
            self.attn = AdditiveAttention(H, K, H)
        elif attention == "dot":
            self.attn = DotAttention(H, K, general=K != H, scaled=True)
        else:
            self.attn = None
        self.combine = nn.Linear(H + K, H) if attention else None  # h̃ = tanh(W_o [s; c] + b_o)
        self.out = nn.Linear(H, tgt_vocab)  # logits = W_y h̃ + b_y

    @property
    def backbone(self) -> layers.RNNBase:
        """The encoder (an rnnlab RNN/LSTM/GRU)."""
        return self.encoder

    # -- encoder and bridge -----------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor | None):
        """-> (memory (B, S, D·H) zero at padding, key padding mask (B, S), decoder state)."""
        B, S = src.shape
        if src_lengths is None:
            src_lengths = torch.full((B,), S, dtype=torch.long)
        src_lengths = torch.as_tensor(src_lengths).to(torch.long)
        if src_lengths.shape != (B,) or int(src_lengths.min()) < 1 or int(src_lengths.max()) > S:
            raise ValueError(f"src_lengths must be (B,) = ({B},) with values in [1, {S}]")
        e = self.drop(self.src_embedding(src))
        packed = pack_padded_sequence(e, src_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, state = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=S)  # (B, S, D·H)
        pad = padding_mask(src_lengths.to(src.device), S)
        return memory, pad, self._bridge(state)

    def _bridge(self, state):
        """Encoder final states (L·D, B, H) -> decoder initial state (L, B, H)."""
        if self.num_directions == 1:
            return state
        L, H = self.num_layers, self.hidden_size

        def cat(s):  # (L·D, B, H) -> (L, B, 2H) = [h→; h←] per layer
            return s.view(L, 2, s.shape[1], H).permute(0, 2, 1, 3).reshape(L, s.shape[1], 2 * H)

        if self.lstm:
            h, c = state
            return torch.tanh(self.bridge_h(cat(h))), self.bridge_c(cat(c))
        return torch.tanh(self.bridge_h(cat(state)))

    # -- decoder ----------------------------------------------------------------------------
    def _top(self, state) -> Tensor:
        return (state[0] if self.lstm else state)[-1]  # s_t of the top layer, (B, H)

    def _step(self, y_prev: Tensor, state, ctx: Tensor | None, memory: Tensor, pad: Tensor,
              keys_proj: Tensor | None):
        """One decoder step -> (logits (B, V), state, context, α (B, S) or None)."""
        e = self.drop(self.tgt_embedding(y_prev))  # E y_{t-1}, (B, E)
        if self.attn is None:
            _, state = self.decoder(e[:, None, :], state)  # s_t = Cell(E y_{t-1}, s_{t-1})
            return self.out(self.drop(self._top(state))), state, None, None
        inp = torch.cat((e, ctx), -1)[:, None, :]  # [E y_{t-1}; c_{t-1}]
        _, state = self.decoder(inp, state)  # s_t = Cell([E y_{t-1}; c_{t-1}], s_{t-1})
        s = self._top(state)
        if keys_proj is not None:
            ctx, alpha = self.attn(s, memory, key_padding_mask=pad, projected_keys=keys_proj)
        else:
            ctx, alpha = self.attn(s, memory, key_padding_mask=pad)  # c_t = Σ_s α_s k_s
        h_tilde = torch.tanh(self.combine(torch.cat((s, ctx), -1)))  # tanh(W_o [s_t; c_t] + b_o)
        return self.out(self.drop(h_tilde)), state, ctx, alpha

    def _start(self, src, src_lengths):
        memory, pad, state = self.encode(src, src_lengths)
        ctx = memory.new_zeros(memory.shape[0], memory.shape[2]) if self.attn else None
        keys_proj = (self.attn.project_keys(memory)
                     if isinstance(self.attn, AdditiveAttention) else None)
        return memory, pad, state, ctx, keys_proj

    def forward(self, src: Tensor, src_lengths: Tensor | None, y_in: Tensor,
                teacher_forcing: float = 1.0, generator: torch.Generator | None = None,
                return_attention: bool = False):
        """src (B, S), src_lengths (B,), y_in (B, T_out) = BOS + gold shifted right
        -> logits (B, T_out, V) (and attention (B, T_out, S) or None when return_attention).

        teacher_forcing = p: at every step each row feeds the gold y_{t-1} with probability p and
        the model's own argmax prediction otherwise (coins drawn from ``generator`` if given).
        """
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1], got {teacher_forcing}")
        memory, pad, state, ctx, keys_proj = self._start(src, src_lengths)
        B, T_out = y_in.shape
        if self.attn is None and teacher_forcing == 1.0:  # whole target in one call
            h, _ = self.decoder(self.drop(self.tgt_embedding(y_in)), state)
            logits = self.out(self.drop(h))
            return (logits, None) if return_attention else logits
        logits, alphas = [], []
        y_prev = y_in[:, 0]
        for t in range(T_out):
            if t > 0:
                y_prev = y_in[:, t]
                if teacher_forcing < 1.0:  # feed own argmax with probability 1 − p
                    coin = torch.rand(B, generator=generator,
                                      device=generator.device if generator is not None else None)
                    own = logits[-1].argmax(-1)
                    y_prev = torch.where(coin.to(y_prev.device) < teacher_forcing, y_prev, own)
            lt, state, ctx, alpha = self._step(y_prev, state, ctx, memory, pad, keys_proj)
            logits.append(lt)
            alphas.append(alpha)
        logits = torch.stack(logits, 1)
        if not return_attention:
            return logits
        return logits, (torch.stack(alphas, 1) if self.attn is not None else None)

    @torch.no_grad()
    def greedy(self, src: Tensor, src_lengths: Tensor | None, max_len: int, bos_id: int,
               eos_id: int, pad_id: int | None = None):
        """Greedy decoding: y_t = argmax p(y | y_<t, src), from BOS, at most ``max_len`` tokens,
        stopping early once every row has emitted EOS. Returns (tokens (B, ≤ max_len), attention
        (B, T, S) or None); after a row's EOS its tokens are ``pad_id`` (EOS if None) and its
        attention rows are zero."""
        memory, pad, state, ctx, keys_proj = self._start(src, src_lengths)
        B = src.shape[0]
        fill = eos_id if pad_id is None else pad_id
        y_prev = torch.full((B,), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        tokens, alphas = [], []
        for _ in range(max_len):
            lt, state, ctx, alpha = self._step(y_prev, state, ctx, memory, pad, keys_proj)
            y = lt.argmax(-1)
            tokens.append(y.masked_fill(done, fill))
            if alpha is not None:
                alphas.append(alpha.masked_fill(done[:, None], 0.0))
            done = done | (y == eos_id)
            y_prev = y
            if bool(done.all()):
                break
        tokens = torch.stack(tokens, 1) if tokens else src.new_zeros(B, 0)
        attn = torch.stack(alphas, 1) if alphas else None
        return tokens, attn


# -- registry --------------------------------------------------------------------------------
MODELS: dict[str, type[_Model]] = {"lm": LanguageModel, "classifier": Classifier,
                                   "regressor": Regressor, "seq2seq": Seq2Seq}


def build(name: str, **config) -> nn.Module:
    """Build a model from a plain dict: name in "lm", "classifier", "regressor", "seq2seq".

    ``build(**model.config)`` rebuilds the same architecture (fresh weights).
    """
    _choice("model", name, tuple(MODELS))
    cls = MODELS[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(config) - set(params))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
                        f"valid: {', '.join(params)}")
    required = [p for p, v in inspect.signature(cls.__init__).parameters.items()
                if p != "self" and v.default is inspect.Parameter.empty and p not in config]
    if required:
        raise UserError(f"model {name!r} needs {', '.join(required)}")
    return cls(**{k: _plain(v) for k, v in config.items()})


# -- parameter counts ------------------------------------------------------------------------
def param_counts(input_size: int, hidden_size: int, num_layers: int = 1,
                 num_heads: int = 4, bidirectional: bool = False) -> dict[str, int]:
    """Parameters of each backbone at equal width H (input size I), no embeddings or heads.

    rnn / lstm / gru: G·H·(I + H + 2) for the first layer (G = 1, 4, 3 gate blocks) — the same
    as torch.nn.RNN/LSTM/GRU — so roughly 1 : 4 : 3. "attention": num_layers pre-norm
    Transformer blocks of width H (4·H² attention + 8·H² MLP + biases and LayerNorms), plus an
    I -> H input projection when I ≠ H; positional encodings are not counted.
    """
    _positive_int("input_size", input_size)
    _positive_int("hidden_size", hidden_size)
    _positive_int("num_layers", num_layers)
    counts = {}
    for kind in RECURRENT:
        layer = _LAYERS[kind](input_size, hidden_size, num_layers, bidirectional=bidirectional)
        counts[kind] = sum(p.numel() for p in layer.parameters())
    if hidden_size % num_heads:
        raise UserError(f"hidden_size ({hidden_size}) must be divisible by num_heads "
                        f"({num_heads})")
    n = sum(p.numel() for _ in range(num_layers)
            for p in TransformerBlock(hidden_size, num_heads).parameters())
    n += 2 * hidden_size  # final LayerNorm of the stack
    if input_size != hidden_size:
        n += input_size * hidden_size + hidden_size  # input projection
    counts["attention"] = n
    return counts
