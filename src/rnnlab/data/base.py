"""What every task has: a kind, sizes for the model head, a baseline, and random batches.

A task is a recipe, not a data set: ``task.batch(split, batch_size, generator)`` draws a fresh
batch from the generator each call (text tasks cut random windows from the corpus), so nothing
big is ever held in memory and everything is reproducible from a seed. ``task.config()`` is a
JSON-able dict with which ``build_task(task.name, **task.config())`` rebuilds the same task.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch

from ..errors import UserError
from .batching import Batch

KINDS = ("lm", "tagging", "classify", "regress", "seq2seq")
SPLITS = ("train", "val")


class Task:
    """Base class. Subclasses set the attributes below in ``__init__`` and define ``batch``.

    name:        registry name ("shakespeare", "a13", "adding", ...)
    kind:        "lm" (next token at every step, y = x shifted), "tagging" (a target at every
                 step), "classify" (many-to-one label), "regress" (many-to-one real value),
                 "seq2seq" (source -> target)
    vocab_size:  number of input token ids (None for float inputs)
    input_size:  feature size of float inputs (None for token inputs)
    num_outputs: vocabulary size / number of classes / 1
    pad_id, bos_id, eos_id: special ids where the task has them
    tokenizer:   the CharTokenizer of text tasks (None otherwise)
    baseline:    loss of the best memoryless predictor (None when not meaningful)
    """

    name: str = "task"
    kind: str = "lm"
    vocab_size: int | None = None
    input_size: int | None = None
    num_outputs: int = 1
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    tokenizer = None
    baseline: float | None = None
    #: defaults of the options build_task accepts (subclasses override)
    OPTIONS: dict = {}

    def config(self) -> dict:
        """JSON-able options: ``build_task(self.name, **self.config())`` rebuilds this task."""
        return {k: getattr(self, k) for k in self.OPTIONS}

    def describe(self) -> dict:
        """JSON-able summary for reports: sizes, special ids, baseline and chance levels."""
        out = {"name": self.name, "kind": self.kind, "config": self.config()}
        for k in ("vocab_size", "input_size", "num_outputs", "pad_id", "bos_id", "eos_id",
                  "baseline", "dependency_chance", "dependency_chance_by_type",
                  "chance_accuracy"):
            v = getattr(self, k, None)
            if v is not None:
                out[k] = v
        return out

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None,
              seq_len: int | None = None) -> Batch:
        raise NotImplementedError

    def stream(self, split: str, batch_size: int, seq_len: int | None = None) -> Iterator[Batch]:
        raise UserError(f"task '{self.name}' has no contiguous stream; only text tasks "
                        "(shakespeare, text) support stateful truncated BPTT")

    def decode(self, ids) -> str:
        """Token ids -> readable text (space-separated ids unless the task knows better)."""
        return " ".join(str(int(i)) for i in ids)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"<Task {self.name} ({self.kind}): {opts}>"


# --- small helpers shared by the task files -------------------------------------------------

def check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
    return split


def check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """An integer option within [low, high] (a float like 8.0 is accepted), else UserError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise UserError(f"option {name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UserError(f"option {name} must be {rng}, got {value}")
    return value


def check_prob(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"option {name} must be a probability in [0, 1], got {value!r}")
    return float(value)


_VAL_SALT = 0x5A1D_0F_7E57


def split_generator(split: str, generator: torch.Generator | None) -> torch.Generator | None:
    """The generator a generated (non-text) task draws ``split`` from.

    "train" uses the caller's generator as is; "val" uses a fresh generator seeded from one
    draw of it, salted, so train and val batches differ even if the caller seeds both
    generators alike. Deterministic given the caller's generator either way.
    """
    check_split(split)
    if split == "train":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator)) ^ _VAL_SALT
    return torch.Generator().manual_seed(seed)


def python_rng(generator: torch.Generator | None) -> random.Random:
    """A ``random.Random`` seeded by one draw from the torch generator.

    Tasks that build sentences token by token in Python (a13) sample with it: deterministic
    given the torch generator, and much faster than one torch call per token.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return random.Random(seed)
