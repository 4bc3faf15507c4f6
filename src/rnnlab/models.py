"""Task models over a swappable backbone: LanguageModel, Classifier, Regressor, Seq2Seq.

Every model takes its backbone by name — "rnn", "lstm", "gru" (rnnlab.RNN/LSTM/GRU, written from
the equations), "mingru", "minlstm", "lru" (parallel-scan recurrences) or "attention" (a pre-norm
Transformer stack) — with the backbone's options
(``rnnlab.backbone.BackboneConfig``: hidden_size, num_layers, dropout, forget_bias, ...) as
keywords, keeps everything in ``.config`` (JSON-able, with "name"), so that
``build(**model.config)`` rebuilds the same architecture, and exposes ``.backbone`` and
``num_parameters()``.

    build("lm", vocab_size=65, backbone="lstm", hidden_size=256)
    build("classifier", num_classes=2, vocab_size=10, backbone="gru", bidirectional=True)
    build("regressor", input_size=2, backbone="lstm", hidden_size=64)
    build("seq2seq", src_vocab=11, tgt_vocab=11, backbone="gru", attention="additive")
    for_task(task, backbone="gru", hidden_size=64)     # the model that fits a task's kind

A language model samples and scores text itself (``generate``, ``stream``, ``score``), as
nanoGPT's GPT does. Mistakes in names or sizes raise ``UserError`` listing the valid choices.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .attention import AttentionStack, TransformerBlock, padding_mask
from .backbone import (
    BACKBONES,
    RECURRENT,
    SCAN,
    BackboneConfig,
    backbone_config,
    choice,
    positive_int,
)
from .errors import UserError
from .seq2seq import Seq2Seq

__all__ = ["BACKBONES", "RECURRENT", "SCAN", "BackboneConfig", "LanguageModel", "Classifier",
           "Regressor", "Seq2Seq", "MODELS", "build", "for_task", "param_counts"]


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
    DEFAULTS = {"hidden_size": 128, "num_layers": 1}  # this model's backbone defaults

    def _set_config(self, own: dict, bb: BackboneConfig) -> None:
        self.backbone_config = bb
        self.config = {"name": self.name, **{k: _plain(v) for k, v in own.items()},
                       **{k: _plain(v) for k, v in bb.to_dict().items()}}

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
    DEFAULTS = {"hidden_size": 256, "num_layers": 2}

    def __init__(self, vocab_size: int, backbone: str | BackboneConfig = "lstm", *,
                 embed_size: int | None = None, tie_weights: bool = False, **options):
        super().__init__()
        positive_int("vocab_size", vocab_size)
        bb = backbone_config(backbone, self.DEFAULTS, options, self.name)
        H = bb.hidden_size
        embed_size = H if embed_size is None else positive_int("embed_size", embed_size)
        if tie_weights and embed_size != H:
            raise UserError(f"tie_weights needs embed_size == hidden_size, got embed_size="
                            f"{embed_size} and hidden_size={H}")
        self._set_config({"vocab_size": vocab_size, "embed_size": embed_size,
                          "tie_weights": tie_weights}, bb)
        self.embedding = nn.Embedding(vocab_size, embed_size)  # e_t = E[x_t], E ~ N(0, 1)
        if tie_weights:  # E is also the output layer: small, like nn.Linear's, not N(0, 1)
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.drop = nn.Dropout(bb.dropout)
        if bb.is_recurrent:
            self.in_proj = None
            self.backbone = bb.recurrent(embed_size)
        else:
            self.in_proj = nn.Linear(embed_size, H) if embed_size != H else None
            self.backbone = bb.attention(causal=True)
        self.decoder = nn.Linear(H, vocab_size)  # logits_t = W h_t + b
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

    # -- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def stream(self, ids: Tensor, length: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> Iterator[Tensor]:
        """Yield ``length`` next tokens, one (B,) tensor at a time, after the prime ``ids``
        (B, T) (or (T,)): x_{t+1} ~ softmax(logits_t / temperature), restricted to the ``top_k``
        largest logits and to the smallest set of tokens whose probability reaches ``top_p``
        (nucleus); temperature 0 takes the argmax. A recurrent model carries its state from
        step to step (O(1) per token); an attention model re-reads its last ``max_len`` tokens.
        """
        if not temperature >= 0 or math.isinf(temperature):
            raise UserError(f"temperature must be a finite number ≥ 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise UserError(f"top-k must be ≥ 1, got {top_k}")
        if top_p is not None and not 0 < top_p <= 1:
            raise UserError(f"top-p must be in (0, 1], got {top_p}")
        self.eval()
        device = next(self.parameters()).device
        ids = ids.to(device).long()
        ids = ids.view(1, -1) if ids.dim() == 1 else ids
        if ids.shape[1] == 0:
            raise UserError("the prime is empty: give at least one token")
        recurrent = not isinstance(self.backbone, AttentionStack)
        max_len = self.config.get("max_len") or 1024
        context = ids[:, -max_len:]
        scan = getattr(self.backbone, "scan", None)  # a scan layer generates step by step
        try:
            logits, state = self(context)
            if scan is not None:
                self.backbone.scan = "sequential"
            for _ in range(length):
                nxt = _pick(logits[:, -1].float(), temperature, top_k, top_p, generator)  # (B,)
                yield nxt
                step = nxt.view(-1, 1).to(device)
                if recurrent:
                    logits, state = self(step, state)
                else:
                    context = torch.cat([context, step], 1)[:, -max_len:]
                    logits, _ = self(context)
        finally:
            if scan is not None:
                self.backbone.scan = scan

    def generate(self, ids: Tensor, length: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """The ``length`` tokens after the prime ``ids`` (B, T): a (B, length) tensor."""
        ids = ids.view(1, -1) if ids.dim() == 1 else ids
        out = list(self.stream(ids, length, temperature, top_k, top_p, generator))
        return torch.stack(out, 1) if out else ids.new_zeros(ids.shape[0], 0)

    # -- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, ids: Tensor, seq_len: int = 256, streams: int = 16) -> dict:
        """Mean negative log-likelihood of every token of ``ids`` (T,) after the first:
        nats = −(1/N) Σ_t log p(x_t | x_<t). The sequence is cut into ``streams`` contiguous
        segments read in parallel (each one token longer on the left so no target is
        skipped); a recurrent model carries its state from one chunk of ``seq_len`` to the
        next, an attention model sees each chunk on its own. Returns {"nats", "tokens", "acc"}
        (acc: the fraction of tokens that were the most likely one)."""
        ids = ids.reshape(-1).long()
        N = ids.numel() - 1  # predicted tokens
        if N < 1:
            raise UserError("the text is too short to score (it needs at least 2 tokens)")
        self.eval()
        device = next(self.parameters()).device
        max_len = self.config.get("max_len")
        if isinstance(self.backbone, AttentionStack) and max_len:
            seq_len = min(seq_len, int(max_len))
        S = max(1, min(streams, N // max(seq_len, 1)))
        bounds = [round(i * N / S) for i in range(S + 1)]  # targets 1..N in S segments
        L = max(bounds[i + 1] - bounds[i] for i in range(S))
        x = torch.zeros(S, L, dtype=torch.long)
        y = torch.zeros(S, L, dtype=torch.long)
        m = torch.zeros(S, L, dtype=torch.bool)
        for i in range(S):
            a, b = bounds[i], bounds[i + 1]  # inputs ids[a:b], targets ids[a+1:b+1]
            x[i, : b - a], y[i, : b - a], m[i, : b - a] = ids[a:b], ids[a + 1 : b + 1], True
        total, correct, state = 0.0, 0, None
        for t0 in range(0, L, seq_len):
            xb = x[:, t0 : t0 + seq_len].to(device)
            yb = y[:, t0 : t0 + seq_len].flatten().to(device)
            mb = m[:, t0 : t0 + seq_len].flatten().to(device)
            logits, state = self(xb, state) if state is not None else self(xb)
            logits = logits.flatten(0, 1).float()
            nll = F.cross_entropy(logits, yb, reduction="none")
            total += float((nll * mb).sum())
            correct += int(((logits.argmax(-1) == yb) & mb).sum())
        return {"nats": total / N, "tokens": N, "acc": correct / N}


def _pick(logits: Tensor, temperature: float, top_k, top_p, generator) -> Tensor:
    """One token per row of logits (B, V)."""
    if temperature == 0:
        return logits.argmax(-1)  # greedy
    z = logits.cpu() / temperature  # logits / T
    if top_k is not None and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, -1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))  # keep the k largest
    if top_p is not None and top_p < 1:
        p, order = torch.softmax(z, -1).sort(-1, descending=True)
        drop = p.cumsum(-1) - p >= top_p  # tokens after the nucleus's mass reached top_p
        z = z.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(torch.softmax(z, -1), 1, generator=generator).view(-1)


# -- many-to-one: classifier and regressor ----------------------------------------------------
class _Encoder(_Model):
    """Encodes a sequence (token ids or float features) into one vector per row (B, D·H).

    pooling=None picks "last" for recurrent backbones and "mean" for attention (recorded in
    .config). pooling="last": the final state — for a bidirectional recurrent layer over packed
    sequences [forward h at the last valid step; backward h at t = 1] (the h_n rnnlab/torch
    layers return for a PackedSequence); for attention, the output at the last valid step.
    pooling="mean": the mean of the outputs over valid steps (padding excluded).
    """

    def _build_encoder(self, vocab_size, input_size, bb: BackboneConfig, bidirectional,
                       pooling, embed_size) -> int:
        if (vocab_size is None) == (input_size is None):
            raise UserError("give exactly one of vocab_size (token ids) or input_size "
                            "(float features)")
        choice("pooling", pooling, (None, "last", "mean"))
        if bidirectional and not bb.is_recurrent:
            raise UserError("bidirectional applies to recurrent backbones (rnn, lstm, gru); the "
                            "attention backbone already sees the whole sequence")
        H = bb.hidden_size
        if vocab_size is not None:
            positive_int("vocab_size", vocab_size)
            in_size = H if embed_size is None else positive_int("embed_size", embed_size)
            self.embedding = nn.Embedding(vocab_size, in_size)
        else:
            in_size = positive_int("input_size", input_size)
            self.embedding = None
        self.drop = nn.Dropout(bb.dropout)
        self.pooling = pooling or ("last" if bb.is_recurrent else "mean")
        self.config["pooling"] = self.pooling
        if bb.is_recurrent:
            self.in_proj = None
            self.backbone = bb.recurrent(in_size, bidirectional)
        else:
            self.in_proj = nn.Linear(in_size, H) if in_size != H else None
            self.backbone = bb.attention(causal=False)
        return H * (2 if bidirectional else 1)

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
        D, H = (2 if rnn.bidirectional else 1), rnn.hidden_size  # torch.nn's layers too
        if not getattr(rnn, "state_is_output", True):  # the LRU: its state is not its output
            n = torch.full((B,), T) if lengths is None else lengths
            fwd = out[torch.arange(B), n.to(out.device) - 1, :H]  # y→ at each row's last step
            return fwd if D == 1 else torch.cat([fwd, out[:, 0, H:]], 1)  # [y→_len ; y←_1]
        h_n = state[0] if isinstance(state, tuple) else state  # (L·D, B, H)
        last = h_n.view(rnn.num_layers, D, B, H)[-1]  # top layer, (D, B, H)
        return last.permute(1, 0, 2).reshape(B, D * H)  # [h→_len ; h←_1]


class Classifier(_Encoder):
    """Many-to-one classification: x (B, T) ids or (B, T, F) features -> logits (B, C)."""

    name = "classifier"

    def __init__(self, num_classes: int, vocab_size: int | None = None,
                 input_size: int | None = None, backbone: str | BackboneConfig = "lstm", *,
                 bidirectional: bool = False, pooling: str | None = None,
                 embed_size: int | None = None, **options):
        super().__init__()
        positive_int("num_classes", num_classes)
        bb = backbone_config(backbone, self.DEFAULTS, options, self.name)
        self._set_config({"num_classes": num_classes, "vocab_size": vocab_size,
                          "input_size": input_size, "bidirectional": bidirectional,
                          "pooling": pooling, "embed_size": embed_size}, bb)
        width = self._build_encoder(vocab_size, input_size, bb, bidirectional, pooling,
                                    embed_size)
        self.head = nn.Linear(width, num_classes)  # logits = W z + b

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.drop(self.encode(x, lengths)))


class Regressor(_Encoder):
    """Many-to-one regression (the adding problem): x (B, T, F) float -> (B,)."""

    name = "regressor"

    def __init__(self, input_size: int, backbone: str | BackboneConfig = "lstm", *,
                 bidirectional: bool = False, pooling: str | None = None, **options):
        super().__init__()
        bb = backbone_config(backbone, self.DEFAULTS, options, self.name)
        self._set_config({"input_size": input_size, "bidirectional": bidirectional,
                          "pooling": pooling}, bb)
        width = self._build_encoder(None, input_size, bb, bidirectional, pooling, None)
        self.head = nn.Linear(width, 1)  # ŷ = w·z + b

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(self.drop(self.encode(x, lengths))).squeeze(-1)


# -- registry --------------------------------------------------------------------------------
MODELS: dict[str, type[nn.Module]] = {"lm": LanguageModel, "classifier": Classifier,
                                      "regressor": Regressor, "seq2seq": Seq2Seq}
#: the model that fits each task kind (rnnlab.data's Task.kind)
MODEL_FOR_KIND = {"lm": "lm", "tagging": "lm", "classify": "classifier", "regress": "regressor",
                  "seq2seq": "seq2seq"}


def _params(cls) -> list[str]:
    return [p for p, v in inspect.signature(cls.__init__).parameters.items()
            if p != "self" and v.kind is not inspect.Parameter.VAR_KEYWORD]


def build(name: str, **config) -> nn.Module:
    """Build a model from a plain dict: name in "lm", "classifier", "regressor", "seq2seq".

    ``build(**model.config)`` rebuilds the same architecture (fresh weights).
    """
    choice("model", name, tuple(MODELS))
    cls = MODELS[name]
    params = _params(cls)
    unknown = sorted(set(config) - set(params) - set(BackboneConfig.fields()))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
                        f"valid: {', '.join(params + list(BackboneConfig.fields()[1:]))}")
    required = [p for p, v in inspect.signature(cls.__init__).parameters.items()
                if p in params and v.default is inspect.Parameter.empty and p not in config]
    if required:
        raise UserError(f"model {name!r} needs {', '.join(required)}")
    return cls(**{k: _plain(v) for k, v in config.items()})


def for_task(task, backbone: str = "lstm", **options) -> nn.Module:
    """The model that fits ``task.kind``, sized by the task (vocabulary, inputs, outputs).
    ``options``: the model's and the backbone's keywords (None values are left out)."""
    kind, name = task.kind, MODEL_FOR_KIND.get(task.kind)
    if name is None:
        raise UserError(f"unknown task kind {kind!r}")
    options = {k: v for k, v in options.items() if v is not None}
    if name == "lm":
        if task.vocab_size != task.num_outputs:
            raise UserError(f"task {task.name!r}: the language model needs as many outputs as "
                            f"input tokens ({task.num_outputs} vs {task.vocab_size})")
        sizes = dict(vocab_size=task.vocab_size)
    elif name == "classifier":
        sizes = dict(num_classes=task.num_outputs, vocab_size=task.vocab_size,
                     input_size=task.input_size)
    elif name == "regressor":
        sizes = dict(input_size=task.input_size)
    else:
        if backbone not in RECURRENT:
            raise UserError(f"seq2seq models need a classic recurrent backbone (rnn, lstm or "
                            f"gru), not {backbone}")
        sizes = dict(src_vocab=task.vocab_size, tgt_vocab=task.num_outputs)
    return build(name, backbone=backbone, **sizes, **options)


# -- parameter counts ------------------------------------------------------------------------
def param_counts(input_size: int, hidden_size: int, num_layers: int = 1,
                 num_heads: int = 4, bidirectional: bool = False) -> dict[str, int]:
    """Parameters of each backbone at equal width H (input size I), no embeddings or heads.

    rnn / lstm / gru: G·H·(I + H + 2) for the first layer (G = 1, 4, 3 gate blocks) — the same
    as torch.nn.RNN/LSTM/GRU — so roughly 1 : 4 : 3. "attention": num_layers pre-norm
    Transformer blocks of width H (4·H² attention + 8·H² MLP + biases and LayerNorms), plus an
    I -> H input projection when I ≠ H; positional encodings are not counted.
    """
    positive_int("input_size", input_size)
    positive_int("hidden_size", hidden_size)
    positive_int("num_layers", num_layers)
    counts = {}
    for kind in RECURRENT:
        bb = BackboneConfig(kind, hidden_size=hidden_size, num_layers=num_layers)
        counts[kind] = sum(p.numel() for p in bb.recurrent(input_size, bidirectional).parameters())
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
