"""The classic long-range synthetic tasks, each with the loss of its best memoryless predictor.

* adding (Arjovsky, Shah & Bengio 2016, after Hochreiter & Schmidhuber 1997): x (B, T, 2),
  channel 0 values u_t ~ U[0, 1], channel 1 a marker 1 at one position drawn uniformly in each
  half; the target is the sum of the two marked values. Predicting the mean E[u+u'] = 1 gives
  MSE Var(u+u') = 2 · 1/12 = 1/6 ≈ 0.167 (``baseline``).
* copy memory (Arjovsky et al. 2016; Hochreiter & Schmidhuber 1997): alphabet 0 blank,
  1..8 data, 9 delimiter; input = 10 data symbols, T−1 blanks, the delimiter, 10 blanks
  (length T+20); target = T+10 blanks, then the 10 data symbols. A memoryless predictor says
  "blank" for the first T+10 steps and is uniform over the 8 symbols after, so its
  cross-entropy is 10·ln 8/(T+20) nats per step (``baseline``). The last 10 targets are the
  long-range ones (dep_mask), each at distance T+10 from the symbol it copies.
* selective copy (Gu & Dao 2023, Mamba): the same alphabet as copy memory (0 noise, 1..8 data,
  9 marker); input = ``length`` positions holding ``tokens`` data symbols at random positions
  (drawn without replacement, uniformly) among noise, then ``tokens`` markers (length
  ``length + tokens``); target at the markers = the data symbols in their order of appearance.
  Where a symbol sits is random, so a model must decide from the content what to keep (a
  time-invariant filter cannot), and nothing but the recall counts: ``mask`` (and dep_mask)
  marks the ``tokens`` marker positions, each at its own distance from the symbol it recalls.
  A memoryless predictor is uniform over the 8 symbols there: cross-entropy ln 8 nats per
  counted step (``baseline``), accuracy 1/8 (``dependency_chance``).
* reverse / copy for seq2seq: source lengths uniform in [min_len, max_len] over ``vocab`` data
  symbols; ids PAD=0, BOS=1, EOS=2, data 3..vocab+2; target = reversed source (or the source
  itself, mode="copy") then EOS.
* classify ("the long review"): the label c is set by ``prefix`` cue tokens drawn from class c's
  own cues, which follow a marker token MARK; everything else (length uniform in
  [min_length, length]) is drawn uniformly from ALL non-pad tokens but MARK — the cue tokens of
  every class and ``vocab`` neutral tokens — independently of c. Later tokens therefore look
  exactly like cues (a cue of another class may come right after the marked ones) yet carry no
  information about c: the label is a function of the marked cues only, and a model must notice
  the marker, store what follows it and keep it to the end. ``position="random"`` (default): the
  marker sits at a uniformly random position, so the distance from the cue to either end of the
  review is random and no end of the sequence holds the answer (a model reading the review
  backwards gains nothing); ``position="start"``: the cues open the review (no marker), the
  classic setting, where a backward reader finds them in its last steps. Chance accuracy 1/C,
  chance loss ln C.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .base import Task, check_batch_size, check_int, split_generator
from .batching import Batch, lengths_to_mask


class AddingTask(Task):
    """The adding problem: regress the sum of the two marked values of a length-T sequence."""

    name = "adding"
    kind = "regress"
    OPTIONS = {"length": 100}

    def __init__(self, length: int = 100):
        self.length = check_int("length", length, 2)
        self.input_size = 2
        self.num_outputs = 1
        self.baseline = 1.0 / 6.0        # Var(u + u') for u, u' ~ U[0, 1]: predicting 1.0

    def batch(self, split, batch_size, generator=None, seq_len=None) -> Batch:
        """x (B, T, 2) float, y (B,) float. ``seq_len`` is ignored (the task has ``length``)."""
        generator = split_generator(split, generator)
        B, T = check_batch_size(batch_size), self.length
        half = T // 2
        values = torch.rand(B, T, generator=generator)                       # u_t ~ U[0,1]
        first = torch.randint(0, half, (B,), generator=generator)            # in [0, T/2)
        second = torch.randint(half, T, (B,), generator=generator)           # in [T/2, T)
        markers = torch.zeros(B, T)
        rows = torch.arange(B)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        y = values[rows, first] + values[rows, second]                       # u_i + u_j
        return Batch(x=torch.stack([values, markers], dim=-1), y=y)


class CopyMemoryTask(Task):
    """Copy memory: recall 10 symbols after a delay of T blanks (length T+20 per sequence)."""

    name = "copy"
    kind = "tagging"
    OPTIONS = {"delay": 100}
    BLANK, DELIM, NUM_DATA, NUM_COPY = 0, 9, 8, 10

    def __init__(self, delay: int = 100):
        self.delay = check_int("delay", delay, 1)
        self.vocab_size = 10
        self.num_outputs = 10
        T = self.delay
        self.baseline = self.NUM_COPY * math.log(self.NUM_DATA) / (T + 20)  # 10·ln8/(T+20)
        self.dependency_chance = 1.0 / self.NUM_DATA

    def batch(self, split, batch_size, generator=None, seq_len=None) -> Batch:
        """x, y (B, T+20) long; dep_mask/distance on the last 10 targets (distance T+10)."""
        generator = split_generator(split, generator)
        B, T, K = check_batch_size(batch_size), self.delay, self.NUM_COPY
        L = T + 2 * K
        data = torch.randint(1, self.NUM_DATA + 1, (B, K), generator=generator)  # symbols 1..8
        x = torch.zeros(B, L, dtype=torch.long)
        x[:, :K] = data
        x[:, T + K - 1] = self.DELIM          # 10 symbols, T−1 blanks, delimiter, 10 blanks
        y = torch.zeros(B, L, dtype=torch.long)
        y[:, T + K:] = data                   # T+10 blanks, then the 10 symbols
        dep = torch.zeros(B, L, dtype=torch.bool)
        dep[:, T + K:] = True
        distance = dep.long() * (T + K)
        return Batch(x=x, y=y, dep_mask=dep, distance=distance)

    def decode(self, ids) -> str:
        sym = {0: "_", 9: "|"}
        return "".join(sym.get(int(i), str(int(i))) for i in ids)


class SelectiveCopyTask(Task):
    """Selective copy: recall, in order, the data symbols scattered among noise, at the markers."""

    name = "selective-copy"
    kind = "tagging"
    OPTIONS = {"length": 100, "tokens": 10}
    NOISE, MARKER, NUM_DATA = 0, 9, 8

    def __init__(self, length: int = 100, tokens: int = 10):
        self.tokens = check_int("tokens", tokens, 1)
        self.length = check_int("length", length, self.tokens)
        self.vocab_size = 10
        self.num_outputs = 10
        self.baseline = math.log(self.NUM_DATA)          # uniform over 8 symbols at the recall
        self.dependency_chance = 1.0 / self.NUM_DATA

    def batch(self, split, batch_size, generator=None, seq_len=None) -> Batch:
        """x, y (B, length+tokens) long; mask = dep_mask = the recall steps; distance from each
        recall step back to its symbol."""
        generator = split_generator(split, generator)
        B, N, K = check_batch_size(batch_size), self.length, self.tokens
        # K distinct positions in [0, N), uniformly, in increasing order
        where = torch.rand(B, N, generator=generator).argsort(1)[:, :K].sort(1).values
        data = torch.randint(1, self.NUM_DATA + 1, (B, K), generator=generator)  # symbols 1..8
        x = torch.full((B, N + K), self.NOISE, dtype=torch.long)
        x.scatter_(1, where, data)
        x[:, N:] = self.MARKER
        y = torch.zeros(B, N + K, dtype=torch.long)
        y[:, N:] = data                                  # the symbols, in order, at the markers
        recall = torch.zeros(B, N + K, dtype=torch.bool)
        recall[:, N:] = True
        distance = torch.zeros(B, N + K, dtype=torch.long)
        distance[:, N:] = torch.arange(N, N + K) - where  # recall step − symbol's position
        return Batch(x=x, y=y, mask=recall, dep_mask=recall.clone(), distance=distance)

    def decode(self, ids) -> str:
        sym = {self.NOISE: "_", self.MARKER: "|"}
        return "".join(sym.get(int(i), str(int(i))) for i in ids)


class ReverseTask(Task):
    """Reverse (or copy) a variable-length sequence with an encoder-decoder."""

    name = "reverse"
    kind = "seq2seq"
    OPTIONS = {"min_len": 5, "max_len": 15, "vocab": 10, "mode": "reverse"}
    PAD, BOS, EOS = 0, 1, 2

    def __init__(self, min_len: int = 5, max_len: int = 15, vocab: int = 10,
                 mode: str = "reverse"):
        self.min_len = check_int("min_len", min_len, 1)
        self.max_len = check_int("max_len", max_len, self.min_len)
        self.vocab = check_int("vocab", vocab, 2)
        if mode not in ("reverse", "copy"):
            raise UserError(f"option mode must be 'reverse' or 'copy', got {mode!r}")
        self.mode = mode
        self.pad_id, self.bos_id, self.eos_id = self.PAD, self.BOS, self.EOS
        self.vocab_size = self.vocab + 3
        self.num_outputs = self.vocab_size
        # a decoder that places EOS right but knows nothing of the source: ln V per symbol
        mean_len = (self.min_len + self.max_len) / 2
        self.baseline = mean_len * math.log(self.vocab) / (mean_len + 1)

    def batch(self, split, batch_size, generator=None, seq_len=None) -> Batch:
        """x (B, S) source, y (B, S+1) target+EOS, y_in = BOS + y shifted; PAD-padded."""
        generator = split_generator(split, generator)
        B = check_batch_size(batch_size)
        lengths = torch.randint(self.min_len, self.max_len + 1, (B,), generator=generator)
        S = int(lengths.max())
        valid = lengths_to_mask(lengths, S)                                   # (B, S)
        src = torch.randint(3, self.vocab + 3, (B, S), generator=generator)
        src = torch.where(valid, src, torch.full_like(src, self.PAD))
        if self.mode == "reverse":
            # reversed source: target[t] = src[len-1-t] for t < len
            idx = (lengths[:, None] - 1 - torch.arange(S)[None, :]).clamp_min(0)
            tgt = torch.where(valid, src.gather(1, idx), torch.full_like(src, self.PAD))
        else:
            tgt = src
        y = torch.full((B, S + 1), self.PAD, dtype=torch.long)
        y[:, :S] = tgt
        y[torch.arange(B), lengths] = self.EOS                              # target, EOS, PAD…
        y_in = torch.cat([torch.full((B, 1), self.BOS, dtype=torch.long), y[:, :-1]], dim=1)
        return Batch(x=src, y=y, mask=y != self.PAD, lengths=lengths, y_in=y_in)

    def decode(self, ids) -> str:
        names = {self.PAD: "<pad>", self.BOS: "<bos>", self.EOS: "<eos>"}
        return " ".join(names.get(int(i), str(int(i) - 3)) for i in ids)


class ClassifyTask(Task):
    """Many-to-one: the label is in ``prefix`` marked cue tokens; the rest are distractors.

    Distractors are uniform over every non-pad token but the marker (cues of all classes
    included), so they are indistinguishable in kind from cues and independent of the label.
    """

    name = "classify"
    kind = "classify"
    OPTIONS = {"length": 50, "min_length": None, "num_classes": 2, "prefix": 3,
               "cues_per_class": 2, "vocab": 20, "position": "random"}
    POSITIONS = ("random", "start")

    def __init__(self, length: int = 50, min_length: int | None = None, num_classes: int = 2,
                 prefix: int = 3, cues_per_class: int = 2, vocab: int = 20,
                 position: str = "random"):
        if position not in self.POSITIONS:
            raise UserError(f"option position must be 'random' or 'start', got {position!r}")
        self.position = position
        self.prefix = check_int("prefix", prefix, 1)
        lead = 1 if position == "random" else 0            # the marker before the cues
        self.length = check_int("length", length, self.prefix + lead + 1)
        shortest = self.prefix + lead + 1  # the cues (and marker) and one token after them
        self.min_length = check_int("min_length", max(self.length // 2, shortest)
                                    if min_length is None else min_length, shortest, self.length)
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.cues_per_class = check_int("cues_per_class", cues_per_class, 1)
        self.vocab = check_int("vocab", vocab, 1)
        # ids: 0 PAD; class c's cue tokens 1 + c·K .. c·K + K; neutral tokens after all cues;
        # then (position="random") the marker MARK, never a distractor
        self.pad_id = 0
        self.first_neutral = 1 + self.num_classes * self.cues_per_class
        self.mark_id = self.first_neutral + self.vocab if lead else None
        self.vocab_size = self.first_neutral + self.vocab + lead
        self.num_outputs = self.num_classes
        self.baseline = math.log(self.num_classes)          # chance cross-entropy ln C
        self.chance_accuracy = 1.0 / self.num_classes

    def batch(self, split, batch_size, generator=None, seq_len=None) -> Batch:
        """x (B, T) long PAD-padded, y (B,) long labels, lengths (B,)."""
        generator = split_generator(split, generator)
        B, K, P = check_batch_size(batch_size), self.cues_per_class, self.prefix
        y = torch.randint(0, self.num_classes, (B,), generator=generator)
        lengths = torch.randint(self.min_length, self.length + 1, (B,), generator=generator)
        T = int(lengths.max())
        # distractors x_t ~ U{1, …, first_neutral + vocab − 1} (every cue and neutral token),
        # independent of y
        x = torch.randint(1, self.first_neutral + self.vocab, (B, T), generator=generator)
        cues = 1 + y[:, None] * K + torch.randint(0, K, (B, P), generator=generator)
        if self.position == "start":
            x[:, :P] = cues
        else:  # MARK at p uniform in [0, len − P − 1], the cues right after it
            u = torch.rand(B, generator=generator)
            start = (u * (lengths - P).to(u.dtype)).long()      # (B,) in [0, len − P − 1]
            rows = torch.arange(B)
            x[rows, start] = self.mark_id
            for k in range(P):
                x[rows, start + 1 + k] = cues[:, k]
        x = torch.where(lengths_to_mask(lengths, T), x, torch.zeros_like(x))
        return Batch(x=x, y=y, lengths=lengths)
