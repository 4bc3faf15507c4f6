"""The a13 tense grammar: every dependency holds in every sentence, positions and distances are
right, the distance knob moves the distance, and chance is what the task says.

The checker below has its own word tables (written from English, not imported from rnnlab), and
parses each decoded sentence independently of the generator's bookkeeping.
"""

import random

import pytest
import torch

from rnnlab.data import build_task
from rnnlab.data.a13 import sentence
from rnnlab.errors import UserError

PERSON_OF_SUBJECT = {
    "I": "I", "you": "you", "he": "he", "she": "she", "it": "it", "we": "we", "they": "they",
    "boy": "he", "man": "he", "girl": "she", "woman": "she", "cat": "it", "dog": "it",
    "bird": "it", "cats": "they", "dogs": "they", "children": "they", "men": "they",
    "women": "they",
}
POSSESSIVE = {"I": "my", "you": "your", "he": "his", "she": "her", "it": "its", "we": "our",
              "they": "their"}
ADVERB_TENSE = {"yesterday": "past", "every": "present", "tomorrow": "future"}
PAST = {"worked", "slept", "played", "walked", "cooked", "went", "ate", "saw", "wrote", "ran",
        "was", "were"}
PRESENT_3SG = {"works", "sleeps", "plays", "walks", "cooks", "goes", "eats", "sees", "writes",
               "runs", "is"}
BASE = {"work", "sleep", "play", "walk", "cook", "go", "eat", "see", "write", "run", "be"}
FILLER_WORDS = {"indeed", "surely", "perhaps", "clearly", "of", "course", "in", "fact", "no",
                "doubt", "near", "by", "behind", "beside", "under", "the", "old", "red", "big",
                "quiet", "small", "green", "tall", "river", "bridge", "gate", "tree", "lake",
                "hill", "wall", "tower"}


def check_sentence(words, deps):
    """Parse one sentence; assert every dependency; return the filler length and deps found."""
    assert words[-1] == "."
    head = 0 if words[0] != "the" else 1                       # subject head word
    person = PERSON_OF_SUBJECT[words[head]]
    verb = head + 1
    v = words[verb]
    adv = next(i for i, w in enumerate(words) if w in ADVERB_TENSE)
    tense = ADVERB_TENSE[words[adv]]
    if tense == "present":
        assert words[adv + 1] == "day"
    # the verb form matches the tense, and agrees with the subject
    third = person in ("he", "she", "it")
    if tense == "future":
        assert v == "will" and words[verb + 1] in BASE
    elif tense == "past":
        assert v in PAST
        if v in ("was", "were"):
            assert v == ("was" if third or person == "I" else "were")
    else:
        if v in ("am", "is", "are"):
            assert v == ("am" if person == "I" else "is" if third else "are")
        else:
            assert (v in PRESENT_3SG) == third and (v in BASE) == (not third)
    # the filler: ", <filler words> ," right before the adverb, or nothing
    fill = 0
    if words[adv - 1] == ",":
        start = words.index(",")
        assert all(w in FILLER_WORDS for w in words[start + 1:adv - 1])
        fill = adv - start
    expected = {(adv, adv - verb, "tense")}
    # the possessive agrees with the subject
    if "with" in words:
        w = words.index("with")
        assert w == adv + (2 if tense == "present" else 1)
        assert words[w + 1] == POSSESSIVE[person]
        expected.add((w + 1, w + 1 - head, "agreement"))
    assert set(deps) == expected
    return fill, expected


@pytest.mark.parametrize("distance", [0, 3, 4, 8, [3, 12]])
def test_every_sentence_keeps_its_dependencies(distance):
    task = build_task("a13", distance=distance)
    for seed in range(6):
        b = task.batch("train", 100, torch.Generator().manual_seed(seed))
        for i in range(100):
            n = int(b.lengths[i])
            ids = torch.cat([b.x[i, :1], b.y[i, :n]])
            words = task.decode(ids).split()
            assert len(words) == n + 1
            # read the dependencies off the batch: target t predicts word t+1
            deps_batch = {int(t) + 1 for t in b.dep_mask[i].nonzero()}
            fill, deps = check_sentence(words, [(p, d, k) for p, d, k in _deps_from(
                words, b.distance[i])])
            assert deps_batch == {p for p, _, _ in deps}
            for p, d, _ in deps:
                assert int(b.distance[i, p - 1]) == d
            if isinstance(distance, int):
                assert fill == distance
            else:
                assert distance[0] <= fill <= distance[1]


def _deps_from(words, dist_row):
    """The batch's (position, distance) pairs, typed by the word found there."""
    out = []
    for t in dist_row.nonzero().flatten().tolist():
        p = t + 1
        kind = "tense" if words[p] in ADVERB_TENSE else "agreement"
        out.append((p, int(dist_row[t]), kind))
    return out


def test_generator_bookkeeping_matches_the_parse():
    rng = random.Random(0)
    for _ in range(2000):
        fill = rng.choice([0, 3, 5, 9])
        words, deps = sentence(rng, fill, p_with=0.5)
        got_fill, _ = check_sentence(words, deps)
        assert got_fill == fill


def test_she_will_work_tomorrow_is_generable():
    rng = random.Random(1)
    found = any(" ".join(sentence(rng, 0)[0]) == "she will work tomorrow ."
                for _ in range(20000))
    assert found
    task = build_task("a13")
    ids = task.encode("she will work tomorrow .")
    assert task.decode(ids) == "she will work tomorrow ."


def test_distance_knob_moves_the_distances_by_exactly_the_filler():
    g = torch.Generator().manual_seed(3)
    tasks = {d: build_task("a13", distance=d) for d in (0, 8, 20)}
    mean = {}
    for d, task in tasks.items():
        b = task.batch("train", 400, g)
        mean[d] = b.distance[b.dep_mask].double().mean().item()
    # same structure distribution, filler added on top: mean distance grows by the filler
    assert abs(mean[8] - mean[0] - 8) < 0.5 and abs(mean[20] - mean[0] - 20) < 0.5
    b = tasks[20].batch("train", 50, g)
    assert b.distance[b.dep_mask].min() >= 21


def test_padding_mask_and_lengths():
    task = build_task("a13", distance=[3, 10])
    b = task.batch("train", 64, torch.Generator().manual_seed(4))
    assert b.x.shape == b.y.shape == b.mask.shape == b.dep_mask.shape == b.distance.shape
    assert torch.equal(b.mask, b.y != task.pad_id)
    assert torch.equal(b.lengths, b.mask.sum(1))
    assert not (b.dep_mask & ~b.mask).any()
    assert torch.equal(b.x[:, 1:][b.mask[:, 1:]], b.y[:, :-1][b.mask[:, 1:]])
    assert len(set(b.lengths.tolist())) > 1


def test_chance_level_is_what_the_task_says():
    """Without the cue the dependent word is uniform over its alternatives, so the best guess
    is right with probability dependency_chance."""
    task = build_task("a13", distance=3, p_with=0.5)
    b = task.batch("train", 3000, torch.Generator().manual_seed(5))
    words = [task.words[i] for i in b.y[b.dep_mask].tolist()]
    tense = [w for w in words if w in ADVERB_TENSE]
    agree = [w for w in words if w in POSSESSIVE.values()]
    assert len(tense) + len(agree) == len(words)
    for group, k in [(tense, 3), (agree, 7)]:
        freqs = [group.count(w) / len(group) for w in set(group)]
        assert len(freqs) == k and max(freqs) < 1 / k + 0.04 and min(freqs) > 1 / k - 0.04
    best_constant = (max(tense.count(w) for w in set(tense)) +
                     max(agree.count(w) for w in set(agree))) / len(words)
    assert task.dependency_chance == pytest.approx((1 / 3 + 0.5 / 7) / 1.5)
    assert abs(best_constant - task.dependency_chance) < 0.03
    assert task.dependency_chance_by_type == {"tense": 1 / 3, "agreement": 1 / 7}


def test_determinism_and_vocabulary():
    a = build_task("a13", distance=[3, 6])
    b = build_task("a13", distance=[3, 6])
    assert a.words == b.words and a.words[0] == "<pad>" and a.vocab_size == len(a.words)
    x1 = a.batch("train", 16, torch.Generator().manual_seed(7))
    x2 = b.batch("train", 16, torch.Generator().manual_seed(7))
    x3 = b.batch("train", 16, torch.Generator().manual_seed(8))
    assert torch.equal(x1.x, x2.x) and torch.equal(x1.distance, x2.distance)
    assert [a.decode(r) for r in x1.x] != [b.decode(r) for r in x3.x]
    with pytest.raises(UserError, match="vocabulary"):
        a.encode("she will sing tomorrow .")
