"""Synthetic tasks: structure, and baselines against their closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab.data import build_task, masked_mean


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- adding ----------------------------------------------------------------------------------

def test_adding_structure():
    T = 11
    task = build_task("adding", length=T)
    b = task.batch("train", 256, gen(1))
    assert b.x.shape == (256, T, 2) and b.y.shape == (256,) and b.x.dtype == torch.float32
    values, markers = b.x[..., 0], b.x[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:, : T // 2].sum(1) == 1).all() and (markers[:, T // 2:].sum(1) == 1).all()
    torch.testing.assert_close(b.y, (values * markers).sum(1))
    # each marker position is uniform within its half: every position gets used
    assert (markers.sum(0) > 0).all()


def test_adding_mean_predictor_scores_one_sixth():
    task = build_task("adding", length=20)
    assert task.baseline == pytest.approx(1 / 6)
    y = torch.cat([task.batch("train", 1000, gen(s)).y for s in range(20)]).double()
    sq = (y - 1.0) ** 2                                      # predicting E[y] = 1
    mse, se = sq.mean().item(), (sq.std() / math.sqrt(sq.numel())).item()
    assert abs(mse - 1 / 6) < 4 * se, (mse, se)


# --- copy memory -----------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 5, 30])
def test_copy_structure_and_dependencies(T):
    task = build_task("copy", delay=T)
    b = task.batch("train", 64, gen(2))
    L = T + 20
    assert b.x.shape == b.y.shape == (64, L)
    data = b.x[:, :10]
    assert ((data >= 1) & (data <= 8)).all()
    assert (b.x[:, 10:T + 9] == 0).all() and (b.x[:, T + 9] == 9).all()
    assert (b.x[:, T + 10:] == 0).all()
    assert (b.y[:, :T + 10] == 0).all() and torch.equal(b.y[:, T + 10:], data)
    assert b.dep_mask.sum(1).tolist() == [10] * 64 and b.dep_mask[:, T + 10:].all()
    t = torch.arange(L).expand(64, L)
    d = b.distance[b.dep_mask]
    assert (d == T + 10).all()
    # the dependent target equals the input `distance` steps earlier
    src = (t - b.distance)[b.dep_mask].view(64, 10)
    assert torch.equal(b.x.gather(1, src), b.y[:, T + 10:])
    assert (b.distance[~b.dep_mask] == 0).all()


@pytest.mark.parametrize("T", [3, 50])
def test_copy_memoryless_predictor_scores_the_baseline_exactly(T):
    task = build_task("copy", delay=T)
    b = task.batch("train", 32, gen(3))
    L = T + 20
    logits = torch.full((32, L, 10), -1e4, dtype=torch.float64)
    logits[:, :T + 10, 0] = 0.0                       # blank, certainly
    logits[:, T + 10:, 1:9] = 0.0                     # uniform over the 8 data symbols
    ce = F.cross_entropy(logits.transpose(1, 2), b.y, reduction="none")
    loss = masked_mean(ce, b.mask)
    assert loss.item() == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-9)
    assert task.baseline == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)


# --- selective copy ----------------------------------------------------------------------------

@pytest.mark.parametrize("N,K", [(1, 1), (12, 4), (100, 10)])
def test_selective_copy_structure_and_dependencies(N, K):
    task = build_task("selective-copy", length=N, tokens=K)
    assert task.kind == "tagging" and task.vocab_size == task.num_outputs == 10
    b = task.batch("train", 64, gen(6))
    L = N + K
    assert b.x.shape == b.y.shape == b.mask.shape == (64, L) and b.x.dtype == torch.long
    head = b.x[:, :N]
    is_data = head != 0
    assert (is_data.sum(1) == K).all()                                # K symbols among noise
    data = head[is_data].view(64, K)                                  # in order of appearance
    assert ((data >= 1) & (data <= 8)).all() and (b.x[:, N:] == 9).all()
    assert torch.equal(b.y[:, N:], data) and (b.y[:, :N] == 0).all()
    assert b.mask[:, N:].all() and not b.mask[:, :N].any() and torch.equal(b.dep_mask, b.mask)
    # each recalled symbol is the input `distance` steps before its recall step
    t = torch.arange(L).expand(64, L)
    src = (t - b.distance)[b.dep_mask].view(64, K)
    assert torch.equal(b.x.gather(1, src), b.y[:, N:])
    assert (b.distance[~b.dep_mask] == 0).all()
    assert (b.distance[b.dep_mask] >= K).all() and (b.distance[b.dep_mask] <= L - 1).all()


def test_selective_copy_positions_are_random():
    """Positions drawn uniformly without replacement: every position is used, and a symbol's
    distance to its recall step varies (a fixed delay would be the plain copy task)."""
    b = build_task("selective-copy", length=30, tokens=3).batch("train", 2000, gen(7))
    used = (b.x[:, :30] != 0).double().mean(0)                         # P(position holds data)
    assert (used - 3 / 30).abs().max() < 0.03
    assert len(b.distance[b.dep_mask].unique()) > 20


@pytest.mark.parametrize("N,K", [(5, 2), (60, 10)])
def test_selective_copy_memoryless_predictor_scores_the_baseline_exactly(N, K):
    task = build_task("selective-copy", length=N, tokens=K)
    b = task.batch("train", 32, gen(8))
    logits = torch.full((32, N + K, 10), -1e4, dtype=torch.float64)
    logits[:, :, 1:9] = 0.0                                           # uniform over 8 symbols
    ce = F.cross_entropy(logits.transpose(1, 2), b.y, reduction="none")
    assert masked_mean(ce, b.mask).item() == pytest.approx(math.log(8), rel=1e-12)
    assert task.baseline == pytest.approx(math.log(8)) and task.dependency_chance == 1 / 8
    assert task.decode(b.x[0])[-K:] == "|" * K


# --- reverse / copy seq2seq --------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["reverse", "copy"])
def test_seq2seq_targets(mode):
    task = build_task("reverse", min_len=2, max_len=9, vocab=6, mode=mode)
    PAD, BOS, EOS = task.pad_id, task.bos_id, task.eos_id
    assert (PAD, BOS, EOS) == (0, 1, 2) and task.vocab_size == 9
    b = task.batch("train", 128, gen(4))
    assert b.lengths.min() >= 2 and b.lengths.max() <= 9
    assert set(b.lengths.tolist()) == set(range(2, 10))
    S = b.x.shape[1]
    assert S == int(b.lengths.max()) and b.y.shape == (128, S + 1) == b.y_in.shape
    for i in range(128):
        n = int(b.lengths[i])
        src = b.x[i, :n].tolist()
        assert all(3 <= s < 9 for s in src) and (b.x[i, n:] == PAD).all()
        want = src[::-1] if mode == "reverse" else src
        assert b.y[i].tolist() == want + [EOS] + [PAD] * (S - n)
        assert b.y_in[i].tolist() == [BOS] + b.y[i, :-1].tolist()
        assert b.mask[i].tolist() == [True] * (n + 1) + [False] * (S - n)


# --- classify ----------------------------------------------------------------------------------

def test_classify_label_is_in_the_prefix_only():
    task = build_task("classify", length=30, min_length=8, num_classes=3, prefix=2,
                      cues_per_class=2, vocab=10, position="start")
    assert task.baseline == pytest.approx(math.log(3)) and task.chance_accuracy == 1 / 3
    b = task.batch("train", 600, gen(5))
    assert b.x.shape[0] == 600 and b.y.shape == (600,) and b.mask is None
    assert b.lengths.min() >= 8 and b.lengths.max() <= 30
    V = 1 + 3 * 2 + 10                                              # PAD, 3·2 cues, 10 neutral
    assert task.vocab_size == V
    for i in range(600):
        n, c = int(b.lengths[i]), int(b.y[i])
        cues = b.x[i, :2]
        assert ((cues - 1) // 2 == c).all()                         # class c's own cue tokens
        assert ((b.x[i, 2:n] >= 1) & (b.x[i, 2:n] < V)).all()      # any non-pad token after
        assert (b.x[i, n:] == 0).all()                              # padding
    # after the prefix: uniform over all V−1 non-pad tokens, for every class alike — so the cue
    # tokens of EVERY class appear as distractors, equally often whatever the label
    valid = torch.arange(b.x.shape[1])[None, :] < b.lengths[:, None]
    after = valid.clone()
    after[:, :2] = False
    freqs = []
    for c in range(3):
        toks = b.x[(b.y == c)[:, None] & after]
        freqs.append(torch.bincount(toks, minlength=V).double() / toks.numel())
    freqs = torch.stack(freqs)                                      # (C, V)
    assert freqs[:, 0].sum() == 0
    assert (freqs[:, 1:] - 1 / (V - 1)).abs().max() < 0.02
    for c in range(3):
        for k in range(3):                                          # class k's cues after class c
            assert freqs[c, 1 + 2 * k:1 + 2 * k + 2].min() > 0.5 / (V - 1)
    assert (torch.bincount(b.y, minlength=3).double() / 600 - 1 / 3).abs().max() < 0.07


def test_classify_label_is_a_function_of_the_prefix_alone():
    """y equals a function of the prefix (the class of its cue tokens); the tokens after the
    prefix, counted class by class, predict y no better than chance; so a bag-of-tokens vote
    over the whole review fails on long reviews: a model must remember what came first."""
    K = 3
    task = build_task("classify", length=100, min_length=100, num_classes=4, prefix=3,
                      cues_per_class=K, vocab=5, position="start")
    b = task.batch("val", 2000, gen(3))
    cls = (b.x[:, :3] - 1) // K                                     # class of each prefix token
    assert (cls == cls[:, :1]).all() and torch.equal(cls[:, 0], b.y)
    # per-class cue counts: tail only, and whole sequence (prefix included)
    def votes(x):
        is_cue = (x >= 1) & (x <= 4 * K)
        c = torch.where(is_cue, (x - 1) // K, torch.full_like(x, 4))
        return torch.nn.functional.one_hot(c, 5)[..., :4].sum(1).double()   # (B, 4)
    tail_vote = votes(b.x[:, 3:])
    tail_acc = (tail_vote.argmax(1) == b.y).double().mean()
    assert abs(tail_acc - 0.25) < 0.05                              # tail says nothing about y
    assert tail_vote.mean(0).sub(tail_vote.mean()).abs().max() < 0.5  # every class's cues appear
    whole_acc = (votes(b.x).argmax(1) == b.y).double().mean()
    assert whole_acc < 0.8                                          # counting does not solve it


def test_classify_cue_at_a_random_marked_position():
    """position="random" (the default): one marker per review at a uniform position, the
    class's cues right after it, and the marker never appears as a distractor."""
    task = build_task("classify", length=40, min_length=10, num_classes=3, prefix=2,
                      cues_per_class=2, vocab=10)
    assert task.position == "random" and task.mark_id == task.vocab_size - 1
    b = task.batch("train", 2000, gen(7))
    starts = []
    for i in range(2000):
        n, c = int(b.lengths[i]), int(b.y[i])
        row = b.x[i, :n]
        (pos,) = (row == task.mark_id).nonzero(as_tuple=True)
        assert pos.numel() == 1                                     # exactly one marker
        p = int(pos)
        assert p + 2 <= n - 1                                       # cues fit in the review
        assert ((row[p + 1:p + 3] - 1) // 2 == c).all()             # class c's cues follow it
        assert (b.x[i, n:] == 0).all()
        starts.append(p / (n - 3))                                  # relative position in [0, 1]
    rel = torch.tensor(starts)
    assert rel.min() == 0 and rel.max() == 1                        # both ends are reached
    assert abs(rel.mean().item() - 0.5) < 0.03                      # uniform-ish


def _end_reader_accuracy(task, batch, k: int, end: str) -> float:
    """The best guess from the k tokens at one end of each review: the class of a marked cue
    if the marker and its first cue are there, else class 0 (chance)."""
    hits = 0
    for i in range(batch.x.shape[0]):
        n = int(batch.lengths[i])
        row = batch.x[i, :n].tolist()
        window = row[:k] if end == "start" else row[n - k:]
        guess = 0
        if task.mark_id is None:                                    # start: cues open it
            guess = (window[0] - 1) // task.cues_per_class if end == "start" else 0
        elif task.mark_id in window[:-1]:
            j = window.index(task.mark_id)
            guess = (window[j + 1] - 1) // task.cues_per_class
        hits += guess == int(batch.y[i])
    return hits / batch.x.shape[0]


def test_reading_the_review_backwards_no_longer_solves_it():
    """The audit's loophole: with the cue at the start, a unidirectional model fed the reversed
    review (or a bidirectional one's backward final state) sees the cue in its last steps and
    solves every length. With the cue at a random position neither end holds the answer."""
    for L in (25, 100):
        start = build_task("classify", length=L, min_length=L, position="start")
        rand = build_task("classify", length=L, min_length=L)
        bs, br = start.batch("val", 1500, gen(2)), rand.batch("val", 1500, gen(2))
        assert _end_reader_accuracy(start, bs, 5, "start") == 1.0   # the trivial solution
        for end in ("start", "end"):                                # gone with a random cue
            assert _end_reader_accuracy(rand, br, 5, end) < 0.5 + 5 / L + 0.05


def test_synthetic_tasks_are_deterministic():
    for name in ["adding", "copy", "selective-copy", "reverse", "classify"]:
        task = build_task(name)
        a, b, c = (task.batch("val", 8, gen(s)) for s in (1, 1, 2))
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
        assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("name", ["adding", "copy", "selective-copy", "reverse", "classify",
                                  "a13"])
def test_val_batches_differ_from_train_batches_under_the_same_seed(name):
    task = build_task(name)
    tr = task.batch("train", 8, gen(11))
    va, va2 = task.batch("val", 8, gen(11)), task.batch("val", 8, gen(11))
    assert torch.equal(va.x, va2.x)
    assert tr.x.shape != va.x.shape or not torch.equal(tr.x, va.x)
