"""Word-level text: a tokenizer that splits on whitespace and punctuation, and joins back.

    tok = WordTokenizer.from_text(text)           # "<unk>" + the most frequent words
    tok.tokens("Is this a dagger?\\n")            # ['Is', 'this', 'a', 'dagger', '?', '\\n']
    tok.decode(tok.encode("Is this a dagger?"))   # 'Is this a dagger?'

Tokens. A word is a run of letters, digits and underscores, with inner apostrophes kept
("o'er", "ne'er"); every other visible character (punctuation) is a token of its own; each
line break is a token ("\\n"), so verse keeps its lines; spaces and tabs only separate tokens.

Joining (``decode``). Tokens are joined with one space, except: none before closing punctuation
(``, . ; : ! ? ) ] }`` and the like) or a line break, none after opening punctuation, a line break,
an apostrophe or a hyphen, and none before a hyphen: "sir,--", "'tis", "well-known" come back
as written. Whitespace is not modelled, so a decoded text is the original up to spacing.

Vocabulary. Id 0 is ``"<unk>"``; then the ``max_vocab - 1`` most frequent tokens of the text it
is built from (ties in code-point order, so the same text always gives the same ids). Tokens
outside it are unseen: ``encode(text, unknown=...)`` raises (``"error"``, for a prime), drops
them (``"skip"``, for evaluation, as the character tokenizer does) or maps them to ``"<unk>"``
(``"replace"``, for training text larger than the vocabulary). ``to_dict()``/``from_dict``
carry it in checkpoints, as ``CharTokenizer``'s vocabulary is.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import torch

from ..errors import UserError

UNK = "<unk>"
MAX_VOCAB = 10000
_TOKEN = re.compile(r"\w+(?:['’]\w+)*|\n|[^\w\s]")
_NO_SPACE_BEFORE = set(",.;:!?)]}’”»…-\n")
_NO_SPACE_AFTER = set("([{‘“«'-\n")


def _check_max_vocab(max_vocab) -> int:
    if isinstance(max_vocab, bool) or not isinstance(max_vocab, int) or max_vocab < 2:
        raise UserError(f"max_vocab must be an integer ≥ 2 (<unk> and one word), got "
                        f"{max_vocab!r}")
    return max_vocab


def separator(prev: str | None, token: str) -> str:
    """What goes between ``prev`` and ``token`` when joining (module doc)."""
    if prev is None or token[0] in _NO_SPACE_BEFORE or prev[-1] in _NO_SPACE_AFTER:
        return ""
    return " "


class WordTokenizer:
    """Words and punctuation marks, "<unk>" at id 0; see the module doc."""

    type = "word"

    def __init__(self, words):
        words = list(words)
        if not words or words[0] != UNK:
            raise UserError(f"a word vocabulary starts with {UNK!r}")
        if any(not isinstance(w, str) or not w for w in words):
            raise UserError("a word vocabulary must be a list of non-empty strings")
        if len(set(words)) != len(words):
            raise UserError("a word vocabulary must not repeat words")
        self.words: list[str] = words
        self.index: dict[str, int] = {w: i for i, w in enumerate(words)}

    @staticmethod
    def tokens(text: str) -> list[str]:
        """The text's tokens, in order (known or not)."""
        return _TOKEN.findall(text)

    @classmethod
    def from_text(cls, text: str, max_vocab: int = MAX_VOCAB) -> WordTokenizer:
        counts = Counter(cls.tokens(text))
        if not counts:
            raise UserError("cannot build a word vocabulary from text without words")
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        return cls([UNK, *[w for w in ranked if w != UNK][: _check_max_vocab(max_vocab) - 1]])

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def count(self, text: str) -> int:
        """How many tokens ``text`` has (known or not)."""
        return len(self.tokens(text))

    def unseen(self, text: str) -> Counter:
        """Tokens of ``text`` outside the vocabulary, with their counts."""
        return Counter(t for t in self.tokens(text) if t not in self.index)

    def encode(self, text: str, unknown: str = "error", replacement: str | None = None
               ) -> torch.Tensor:
        """str -> (N,) long ids; ``unknown``: "error", "skip" or "replace" (with "<unk>")."""
        if unknown not in ("error", "skip", "replace"):
            raise UserError(f"unknown-word policy must be one of error, skip, replace, got "
                            f"{unknown!r}")
        toks = self.tokens(text)
        ids = [self.index.get(t, -1) for t in toks]
        if -1 in ids:
            if unknown == "error":
                missing = sorted({t for t in toks if t not in self.index})
                shown = ", ".join(repr(t) for t in missing[:20])
                more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
                raise UserError(f"text contains {len(missing)} word(s) the model never saw in "
                                f"training: {shown}{more}")
            rep = self.index[replacement if replacement is not None else UNK] \
                if unknown == "replace" else None
            ids = [rep if i == -1 else i for i in ids if i != -1 or rep is not None]
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids, prev: str | None = None) -> str:
        """ids -> text, tokens joined as the module doc says (``prev``: the token before)."""
        return self._join(ids, prev)[0]

    def _join(self, ids, prev: str | None) -> tuple[str, str | None]:
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().to("cpu").numpy()
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.words)):
            raise UserError(f"token id out of range for a vocabulary of {len(self.words)}")
        out = []
        for i in ids:
            w = self.words[i]
            out.append(separator(prev, w) + w)
            prev = w
        return "".join(out), prev

    def decoder(self, context: str = ""):
        """A function ids -> text that joins each new token to what came before (``context``,
        e.g. the prime): for streaming."""
        toks = self.tokens(context)
        prev = [toks[-1] if toks else None]

        def push(ids) -> str:
            text, prev[0] = self._join(ids, prev[0])
            return text

        return push

    def to_dict(self) -> dict:
        """JSON-able: {"type": "word", "words": [...]} (ids are list positions)."""
        return {"type": "word", "words": list(self.words)}

    @classmethod
    def from_dict(cls, d: dict) -> WordTokenizer:
        if not isinstance(d, dict) or d.get("type") != "word" or "words" not in d:
            raise UserError("not a word vocabulary (expected {'type': 'word', 'words': [...]})")
        return cls(d["words"])

    def __eq__(self, other) -> bool:
        return isinstance(other, WordTokenizer) and self.words == other.words

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"
