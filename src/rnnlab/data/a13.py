"""a13: a small English tense grammar with long-range dependencies of known distance.

Built around the course notes' §A13 sentence "she will work tomorrow .". Word-level tokens.
Every sentence is

    SUBJECT  VERB-GROUP  [COMPLEMENT]  [FILLER]  ADVERB  [with POSSESSIVE NOUN]  .

    she      will work                           tomorrow                         .
    the dogs went        to the market  , near the old bridge ,  yesterday  with their friends .
    I        am          tired                   every day                        .

* subject: one of seven persons (I, you, he, she, it, we, they), drawn uniformly; he/she/it/they
  also appear as noun phrases ("the boy", "the cat", "the children", ...).
* tense: past / present / future, drawn uniformly. The verb group shows it, with subject–verb
  agreement: regular and irregular verbs (work/works/worked/will work, go/goes/went/will go,
  ...), and be (am/is/are, was/were, will be).
* filler: the ``distance`` knob — F tokens inserted before the adverb, a parenthetical
  ", near the old bridge by the river ," (F = 0, or F >= 3: the commas take 2 tokens).

Two long-range dependencies, marked in ``Batch.dep_mask`` with their exact distance in
``Batch.distance`` (positions of the target tokens):

* tense: the first token of the verb group (the tense marker: "worked", "works", "will", ...)
  fixes the closing adverb — past "yesterday", present "every (day)", future "tomorrow".
  Distance = |verb group| + |complement| + F. Three alternatives: chance 1/3.
* agreement: the subject fixes the possessive after "with" — I my, you your, he his, she her,
  it its, we our, they their. Distance from the subject's head word = 2 + |verb group| +
  |complement| + F + |adverb|. Seven alternatives: chance 1/7.

At each dependent position the next token is *determined* by the cue: nothing between cue and
target says anything about it (complements, fillers and "with" are independent of tense and
person), and the sentence structure makes the position itself predictable (a verb either never
or always takes a complement; complement and filler words are disjoint; the filler ends with a
comma after a filler word). So a model that remembers the cue can reach 100 % there, and one that
has forgotten it can do no better than ``dependency_chance_by_type`` — overall, with a
possessive phrase in a fraction p_with of sentences, ``dependency_chance`` =
(1/3 + p_with/7) / (1 + p_with).

The task is "lm": next word at every position, y = x shifted by one; sentences are padded with
``pad_id`` (0) and ``lengths`` / ``mask`` mark the real positions. ``distance`` is an int (F
filler tokens in every sentence) or a range [lo, hi] with lo >= 3 (F uniform over it, for
training mixes); build_task("a13", distance=8) generates sentences at one setting for evaluation.
"""

from __future__ import annotations

import random

import torch

from ..errors import UserError
from .base import Task, check_batch_size, check_prob, python_rng, split_generator
from .batching import Batch

PAD = "<pad>"
TENSES = ("past", "present", "future")
PERSONS = ("I", "you", "he", "she", "it", "we", "they")

# person -> ways to say the subject (the last word is the head, the agreement cue)
SUBJECTS = {
    "I": [["I"]],
    "you": [["you"]],
    "he": [["he"], ["the", "boy"], ["the", "man"]],
    "she": [["she"], ["the", "girl"], ["the", "woman"]],
    "it": [["it"], ["the", "cat"], ["the", "dog"], ["the", "bird"]],
    "we": [["we"]],
    "they": [["they"], ["the", "cats"], ["the", "dogs"], ["the", "children"], ["the", "men"],
             ["the", "women"]],
}
POSSESSIVE = {"I": "my", "you": "your", "he": "his", "she": "her", "it": "its", "we": "our",
              "they": "their"}
THIRD_SINGULAR = {"he", "she", "it"}

# lemma: (3rd person singular present, past, complements). A verb takes no complement ever
# (work, sleep) or always one, so the adverb's position is predictable.
VERBS = {
    "work": ("works", "worked", [[]]),
    "sleep": ("sleeps", "slept", [[]]),
    "play": ("plays", "played", [["football"], ["outside"]]),
    "walk": ("walks", "walked", [["home"], ["to", "school"]]),
    "cook": ("cooks", "cooked", [["dinner"], ["lunch"]]),
    "go": ("goes", "went", [["home"], ["to", "school"], ["to", "the", "market"]]),
    "eat": ("eats", "ate", [["lunch"], ["an", "apple"], ["dinner"]]),
    "see": ("sees", "saw", [["a", "film"], ["the", "sea"]]),
    "write": ("writes", "wrote", [["a", "letter"], ["a", "song"]]),
    "run": ("runs", "ran", [["fast"], ["home"]]),
    "be": (None, None, [["happy"], ["tired"], ["busy"], ["at", "home"]]),
}
ADVERB = {"past": ["yesterday"], "present": ["every", "day"], "future": ["tomorrow"]}
COMPANIONS = ["friends", "family", "neighbours"]

# filler words: disjoint from every other part of the grammar
FILLER_1 = [["indeed"], ["surely"], ["perhaps"], ["clearly"]]
FILLER_2 = [["of", "course"], ["in", "fact"], ["no", "doubt"]]
PREPOSITIONS = ["near", "by", "behind", "beside", "under"]
ADJECTIVES = ["old", "red", "big", "quiet", "small", "green", "tall"]
FILLER_NOUNS = ["river", "bridge", "gate", "tree", "lake", "hill", "wall", "tower"]


LEMMAS = tuple(VERBS)


def _pick(rng: random.Random, seq):
    """rng.choice, about three times faster (one float draw)."""
    return seq[int(rng.random() * len(seq))]


def verb_group(lemma: str, tense: str, person: str) -> list[str]:
    """The verb in a tense with subject–verb agreement: she works / they work / I was ..."""
    if tense == "future":
        return ["will", lemma]                                  # will + base form
    if lemma == "be":
        if tense == "present":
            return ["am" if person == "I" else "is" if person in THIRD_SINGULAR else "are"]
        return ["was" if person in THIRD_SINGULAR or person == "I" else "were"]
    third, past, _ = VERBS[lemma]
    if tense == "past":
        return [past]
    return [third if person in THIRD_SINGULAR else lemma]


def filler(n: int, rng: random.Random) -> list[str]:
    """n filler tokens: [] for n = 0, else ", <n-2 words> ," (n >= 3)."""
    if n == 0:
        return []
    if n < 3:
        raise ValueError("a filler has 0 or >= 3 tokens")
    words: list[str] = []
    left = n - 2
    if left == 1:
        words = list(_pick(rng, FILLER_1))
    elif left == 2:
        words = list(_pick(rng, FILLER_2))
    while left >= 3:  # a chain of prepositional phrases "near the [adj ...] noun", 3-5 words
        size = _pick(rng, [s for s in (3, 4, 5) if left - s == 0 or left - s >= 3])
        words += [_pick(rng, PREPOSITIONS), "the", *rng.sample(ADJECTIVES, size - 3),
                  _pick(rng, FILLER_NOUNS)]
        left -= size
    return [",", *words, ","]


def vocabulary() -> list[str]:
    """Every word the grammar can produce, sorted, after the padding token (id 0)."""
    words = {".", ",", "will", "with", "am", "is", "are", "was", "were"}
    for ways in SUBJECTS.values():
        words.update(w for way in ways for w in way)
    for lemma, (third, past, comps) in VERBS.items():
        words.update(w for w in (lemma, third, past) if w)
        words.update(w for c in comps for w in c)
    for group in (ADVERB.values(), FILLER_1, FILLER_2):
        words.update(w for g in group for w in g)
    words.update(POSSESSIVE.values())
    words.update(COMPANIONS + PREPOSITIONS + ADJECTIVES + FILLER_NOUNS + ["the"])
    return [PAD, *sorted(words)]


def sentence(rng: random.Random, fill: int, p_with: float = 0.5,
             tense: str | None = None, person: str | None = None, lemma: str | None = None
             ) -> tuple[list[str], list[tuple[int, int, str]]]:
    """One sentence -> (words, deps); deps = [(position of dependent word, distance, type)].

    Distances count words: the dependent word at position i is fixed by the word at i − d.
    """
    tense = tense or _pick(rng, TENSES)
    person = person or _pick(rng, PERSONS)
    lemma = lemma or _pick(rng, LEMMAS)
    subject = _pick(rng, SUBJECTS[person])
    head = len(subject) - 1                                      # agreement cue
    words = subject + verb_group(lemma, tense, person)
    marker = len(subject)                                        # tense cue: verb group start
    words += _pick(rng, VERBS[lemma][2]) + filler(fill, rng)
    deps = [(len(words), len(words) - marker, "tense")]
    words += ADVERB[tense]
    if rng.random() < p_with:
        words.append("with")
        deps.append((len(words), len(words) - head, "agreement"))
        words += [POSSESSIVE[person], _pick(rng, COMPANIONS)]
    words.append(".")
    return words, deps


class A13Task(Task):
    """Next-word prediction on the a13 tense grammar; see the module docstring."""

    name = "a13"
    kind = "lm"
    OPTIONS = {"distance": 0, "p_with": 0.5}

    def __init__(self, distance=0, p_with: float = 0.5):
        self.distance, self._fills = self._parse_distance(distance)
        self.p_with = check_prob("p_with", p_with)
        self.words = vocabulary()
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad_id = 0
        self.vocab_size = len(self.words)
        self.num_outputs = self.vocab_size
        self.baseline = None
        self.dependency_chance_by_type = {"tense": 1 / 3, "agreement": 1 / 7}
        # dependent positions per sentence: 1 tense + p_with agreement
        self.dependency_chance = (1 / 3 + self.p_with / 7) / (1 + self.p_with)

    @staticmethod
    def _parse_distance(distance):
        """int F (0 or >= 3) or a range [lo, hi] with 3 <= lo <= hi -> (config value, choices)."""
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)
        if is_int(distance):
            if distance == 0 or distance >= 3:
                return distance, [distance]
        elif isinstance(distance, (list, tuple)) and len(distance) == 2 \
                and all(is_int(v) for v in distance):
            lo, hi = distance
            if 3 <= lo <= hi:
                return [lo, hi], list(range(lo, hi + 1))
        raise UserError(
            f"option distance must be 0, an integer >= 3, or a range [lo, hi] with "
            f"3 <= lo <= hi (filler tokens before the dependent word; a filler ', ... ,' has "
            f"at least 3 tokens), got {distance!r}")

    def sample(self, rng: random.Random) -> tuple[list[str], list[tuple[int, int, str]]]:
        """One sentence at this task's distance setting (see ``sentence``)."""
        return sentence(rng, _pick(rng, self._fills), self.p_with)

    def batch(self, split, batch_size, generator=None, seq_len=None) -> Batch:
        """x, y (B, T) long (y = x shifted), mask/lengths, dep_mask/distance. ``seq_len`` is
        ignored: sentences have their own lengths."""
        generator = split_generator(split, generator)
        B = check_batch_size(batch_size)
        rng = python_rng(generator)
        sents = [self.sample(rng) for _ in range(B)]
        L = max(len(w) for w, _ in sents)
        rows, dists = [], []
        index = self.index
        for words, deps in sents:
            rows.append([index[w] for w in words] + [self.pad_id] * (L - len(words)))
            d = [0] * (L - 1)
            for pos, dist, _ in deps:
                d[pos - 1] = dist                                 # target t predicts word t+1
            dists.append(d)
        ids = torch.tensor(rows, dtype=torch.long)                # (B, L), padded with 0
        distance = torch.tensor(dists, dtype=torch.long)          # (B, L-1)
        lengths = torch.tensor([len(w) - 1 for w, _ in sents])    # inputs: all but the last
        mask = torch.arange(L - 1)[None, :] < lengths[:, None]
        return Batch(x=ids[:, :-1], y=ids[:, 1:], mask=mask, lengths=lengths,
                     dep_mask=distance > 0, distance=distance)

    def encode(self, text: str | list[str]) -> torch.Tensor:
        """Words (a list, or a string split on spaces) -> (N,) long ids."""
        words = text.split() if isinstance(text, str) else list(text)
        missing = sorted({w for w in words if w not in self.index})
        if missing:
            raise UserError(f"word(s) not in the a13 vocabulary: {', '.join(missing)}")
        return torch.tensor([self.index[w] for w in words], dtype=torch.long)

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids if int(i) != self.pad_id)
