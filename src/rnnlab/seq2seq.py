"""Sequence to sequence: an encoder-decoder over tokens, with or without attention."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import layers
from .attention import AdditiveAttention, DotAttention, padding_mask
from .backbone import RECURRENT, BackboneConfig, backbone_config, choice, positive_int

SEQ2SEQ_ATTENTION = (None, "additive", "dot")


class Seq2Seq(nn.Module):
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
    DEFAULTS = {"hidden_size": 128, "num_layers": 1}

    def __init__(self, src_vocab: int, tgt_vocab: int, backbone: str | BackboneConfig = "lstm",
                 *, attention: str | None = None, bidirectional_encoder: bool = False,
                 embed_size: int | None = None, **options):
        super().__init__()
        positive_int("src_vocab", src_vocab)
        positive_int("tgt_vocab", tgt_vocab)
        bb = backbone_config(backbone, self.DEFAULTS, options, self.name, allowed=RECURRENT)
        choice("attention", attention, SEQ2SEQ_ATTENTION)
        E = bb.hidden_size if embed_size is None else positive_int("embed_size", embed_size)
        self.backbone_config = bb
        self.config = {"name": self.name, "src_vocab": src_vocab, "tgt_vocab": tgt_vocab,
                       "attention": attention, "bidirectional_encoder": bidirectional_encoder,
                       "embed_size": embed_size, **bb.to_dict()}
        hidden_size, num_layers, dropout = bb.hidden_size, bb.num_layers, bb.dropout
        H, L = hidden_size, num_layers
        D = 2 if bidirectional_encoder else 1
        self.hidden_size, self.num_layers, self.num_directions = H, L, D
        self.src_embedding = nn.Embedding(src_vocab, E)
        self.tgt_embedding = nn.Embedding(tgt_vocab, E)
        self.drop = nn.Dropout(dropout)
        self.encoder = bb.recurrent(E, bidirectional_encoder)
        self.lstm = bb.backbone == "lstm"
        if bidirectional_encoder:
            self.bridge_h = nn.Linear(2 * H, H)  # s_0 = tanh(W_b [h→; h←] + b_b)
            self.bridge_c = nn.Linear(2 * H, H) if self.lstm else None  # c_0 = W_c [c→; c←] + b
        else:
            self.bridge_h = self.bridge_c = None
        self.attention_kind = attention
        K = D * H  # key / context width
        self.decoder = bb.recurrent(E + (K if attention else 0))
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

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
