"""Every backbone option, once: ``BackboneConfig`` checks them and builds the backbone.

A task model (``rnnlab.models``) is an input layer, a backbone and a head. The backbone is one of

- "rnn", "lstm", "gru": ``rnnlab.RNN/LSTM/GRU`` (batch-first), written from the equations and
  trained by explicit BPTT;
- "mingru", "minlstm", "lru": ``rnnlab.MinGRU/MinLSTM/LRU``, diagonal linear recurrences
  trained by a parallel scan (and generating one step at a time);
- "attention": ``rnnlab.attention.AttentionStack``, a pre-norm Transformer stack;

and its options live here, in one dataclass (as nanoGPT's ``GPTConfig``), so the models, the
command line and the studies all read the same names and the same checks::

    BackboneConfig("lstm", hidden_size=128, forget_bias=1.0).recurrent(input_size=32)
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

from torch import nn

from . import layers
from .attention import POSITIONAL, AttentionStack
from .errors import UserError
from .lru import LRU
from .minrnn import MinGRU, MinLSTM

RECURRENT = ("rnn", "lstm", "gru")  # classic cells, explicit BPTT
SCAN = ("mingru", "minlstm", "lru")  # diagonal linear recurrences, parallel scan
BACKBONES = (*RECURRENT, *SCAN, "attention")
RECURRENT_INITS = ("default", "orthogonal")
NONLINEARITIES = ("tanh", "relu")
_LAYERS = {"rnn": layers.RNN, "lstm": layers.LSTM, "gru": layers.GRU, "mingru": MinGRU,
           "minlstm": MinLSTM, "lru": LRU}


MAX_SIZE = 2**31 - 1  # a tensor dimension beyond this is no size a model can have


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    if value > MAX_SIZE:
        raise UserError(f"{name} must be at most {MAX_SIZE} (2^31 - 1), got {value}")
    return int(value)


def choice(name: str, value, choices) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) if c is None else str(c) for c in choices)
        raise UserError(f"unknown {name} {value!r}; choose from {shown}")


def _real(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Real)


@dataclass
class BackboneConfig:
    """The backbone's kind and options. Options that do not apply to the kind must keep their
    defaults (``forget_bias`` is the LSTM's, ``nonlinearity`` the RNN's, ``num_heads``,
    ``max_len`` and ``positional`` the attention stack's)."""

    backbone: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.0                 # between layers (recurrent), in blocks (attention)
    forget_bias: float | None = None     # lstm: b_ih_f + b_hh_f = forget_bias
    recurrent_init: str = "default"      # "orthogonal": each gate block of W_hh is r·Q
    spectral_radius: float | None = None  # r
    nonlinearity: str = "tanh"           # rnn: tanh or relu
    num_heads: int = 4                   # attention
    max_len: int = 1024                  # attention: longest sequence (positions)
    positional: str = "learned"          # attention: "learned" or "sinusoidal"

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self, allowed=BACKBONES) -> BackboneConfig:
        """Every mistake a user can make -> ``UserError`` naming the option; returns self."""
        choice("backbone", self.backbone, allowed)
        positive_int("hidden_size", self.hidden_size)
        positive_int("num_layers", self.num_layers)
        if not _real(self.dropout) or not 0 <= self.dropout < 1:
            raise UserError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)
        choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        r = self.spectral_radius
        if r is not None and (not _real(r) or not 0 < r < float("inf")):
            raise UserError(f"spectral_radius must be a positive number, got {r!r}")
        fb = self.forget_bias
        if fb is not None and (not _real(fb) or fb != fb or abs(fb) == float("inf")):
            raise UserError(f"forget_bias must be a finite number, got {fb!r}")
        if fb is not None and self.backbone != "lstm":
            raise UserError(f"forget_bias applies to the lstm backbone only, not {self.backbone}")
        if self.nonlinearity != "tanh" and self.backbone != "rnn":
            raise UserError(f"nonlinearity applies to the rnn backbone only, not {self.backbone}")
        if self.backbone == "attention":
            positive_int("num_heads", self.num_heads)
            positive_int("max_len", self.max_len)
            if self.hidden_size % self.num_heads:
                raise UserError(f"hidden_size ({self.hidden_size}) must be divisible by "
                                f"num_heads ({self.num_heads}) for the attention backbone")
            choice("positional", self.positional, POSITIONAL)
        if self.backbone not in RECURRENT and (self.recurrent_init != "default" or r is not None):
            raise UserError("recurrent_init and spectral_radius apply to the classic recurrent "
                            f"backbones (rnn, lstm, gru), not {self.backbone}")
        return self

    @property
    def is_recurrent(self) -> bool:
        """A layer called as layer(x, state) -> (output, state): classic cells and scans."""
        return self.backbone in RECURRENT or self.backbone in SCAN

    def recurrent(self, input_size: int, bidirectional: bool = False) -> nn.Module:
        """The recurrent layer, batch-first, with rnnlab's init options."""
        L = self.num_layers
        if self.backbone in SCAN:
            return _LAYERS[self.backbone](input_size, self.hidden_size, L, batch_first=True,
                                          dropout=self.dropout if L > 1 else 0.0,
                                          bidirectional=bidirectional)
        kw = {"recurrent_init": self.recurrent_init, "spectral_radius": self.spectral_radius}
        if self.backbone == "lstm":
            kw["forget_bias"] = self.forget_bias
        if self.backbone == "rnn":
            kw["nonlinearity"] = self.nonlinearity
        return _LAYERS[self.backbone](input_size, self.hidden_size, L, batch_first=True,
                                      dropout=self.dropout if L > 1 else 0.0,
                                      bidirectional=bidirectional, **kw)

    def attention(self, causal: bool) -> AttentionStack:
        """The Transformer stack of width hidden_size."""
        return AttentionStack(self.hidden_size, self.num_layers, self.num_heads, self.dropout,
                              causal=causal, positional=self.positional, max_len=self.max_len)


def backbone_config(backbone: str | BackboneConfig, defaults: dict, options: dict,
                    model: str, allowed=BACKBONES) -> BackboneConfig:
    """A checked BackboneConfig from a name (or a config) and keyword options over the model's
    ``defaults``; an unknown option is a UserError listing the valid ones."""
    if isinstance(backbone, BackboneConfig):
        options = {**backbone.to_dict(), **options}
        backbone = options.pop("backbone")
    unknown = sorted(set(options) - set(BackboneConfig.fields()))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for model {model!r}; backbone "
                        f"options: {', '.join(BackboneConfig.fields()[1:])}")
    return BackboneConfig(backbone=backbone, **{**defaults, **options}).check(allowed)
