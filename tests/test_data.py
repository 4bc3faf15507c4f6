"""rnnlab.data: the shipped corpus, load_text errors, the tokenizer, the char LM task, batching,
the registry. References are closed forms, the raw file, Python's own str/bytes, torch.nn."""

import gzip
import json
import math
from importlib import resources
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data import (
    Batch,
    CharTokenizer,
    batchify,
    build_task,
    load_text,
    masked_mean,
    pack,
    shakespeare_text,
    task_names,
)
from rnnlab.errors import UserError

# the source the package data was made from, in the project's shared folder beside the repository
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare.txt"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- the shipped corpus --------------------------------------------------------------------

def test_shipped_corpus_size_and_alphabet():
    text = shakespeare_text()
    assert len(text) == 1_104_338
    assert len(set(text)) == 76
    assert text.startswith(text.lstrip())  # no leading junk (a BOM would be stripped by lstrip)


def test_shipped_corpus_is_package_data_and_matches_source():
    res = resources.files("rnnlab.data").joinpath("shakespeare.txt.gz")
    assert res.is_file()
    raw = gzip.decompress(res.read_bytes())
    assert raw.decode("utf-8") == shakespeare_text()
    if SHARED.exists():
        assert raw == SHARED.read_bytes()


# --- load_text -------------------------------------------------------------------------------

def test_load_text_reads_utf8_and_drops_bom(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("\ufeffhé llo\nwörld ✓".encode())
    assert load_text(p) == "hé llo\nwörld ✓"


@pytest.mark.parametrize("kind, needle", [
    ("missing", "not found"),
    ("directory", "directory"),
    ("empty", "empty"),
    ("blank", "empty"),
    ("binary", "binary"),
    ("latin1", "UTF-8"),
])
def test_load_text_bad_files_are_user_errors_naming_the_path(tmp_path, kind, needle):
    p = tmp_path / f"{kind}.txt"
    if kind == "directory":
        p.mkdir()
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "blank":
        p.write_bytes(b" \n\n\t")
    elif kind == "binary":
        p.write_bytes(b"PK\x03\x04\x00\x00binary")
    elif kind == "latin1":
        p.write_bytes("café".encode("latin-1"))
    with pytest.raises(UserError) as e:
        load_text(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "\n" not in msg


def test_text_task_bad_path_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        build_task("text", path=tmp_path / "nope.txt")
    with pytest.raises(UserError, match="path"):
        build_task("text")


# --- the tokenizer ---------------------------------------------------------------------------

def test_tokenizer_round_trips_shakespeare_with_sorted_ids():
    text = shakespeare_text()
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 76
    assert tok.chars == sorted(set(text))          # reference: Python's own ordering
    ids = tok.encode(text)
    assert ids.dtype == torch.long and ids.shape == (len(text),)
    assert ids[:50].tolist() == [sorted(set(text)).index(c) for c in text[:50]]
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", ["a", "ab\nba", "héllo wörld ✓ 😀 \t\r\n", "\x00\x7f\uffff",
                                  "".join(chr(c) for c in range(32, 2000, 7))])
def test_tokenizer_round_trips_arbitrary_text(text):
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text))
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text).tolist()) == text


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=200), st.text(max_size=50))
def test_tokenizer_round_trips_any_text_and_skips_exactly_the_unseen(text, other):
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    kept = "".join(c for c in other if c in set(text))          # reference: plain Python
    assert tok.decode(tok.encode(other, unknown="skip")) == kept
    assert sum(tok.unseen(other).values()) == len(other) - len(kept)


def test_tokenizer_dict_is_json_and_rebuilds():
    tok = CharTokenizer.from_text("hello, world")
    d = json.loads(json.dumps(tok.to_dict()))
    tok2 = CharTokenizer.from_dict(d)
    assert tok2 == tok and tok2.encode("world").tolist() == tok.encode("world").tolist()
    for bad in [{}, {"type": "word", "chars": ["a"]}, {"type": "char", "chars": ["ab"]},
                {"type": "char", "chars": ["a", "a"]}, {"type": "char", "chars": []}, "x"]:
        with pytest.raises(UserError):
            CharTokenizer.from_dict(bad)


def test_unseen_characters_policy():
    tok = CharTokenizer.from_text("abc ")
    text = "abzc éa z"
    with pytest.raises(UserError) as e:                       # default: prime text at sampling
        tok.encode(text)
    assert "'z'" in str(e.value) and "'é'" in str(e.value) and "2 character" in str(e.value)
    assert tok.unseen(text) == {"z": 2, "é": 1}
    skipped = tok.encode(text, unknown="skip")                 # evaluation: drop and count
    assert tok.decode(skipped) == "abc a "
    assert len(text) - len(skipped) == sum(tok.unseen(text).values())
    assert tok.decode(tok.encode(text, unknown="replace")) == "ab c  a  "
    assert tok.decode(tok.encode(text, unknown="replace", replacement="a")) == "abac aa a"
    with pytest.raises(UserError):
        tok.encode(text, unknown="replace", replacement="q")
    with pytest.raises(UserError):
        tok.encode(text, unknown="ignore")
    with pytest.raises(UserError):
        tok.decode([0, 4])


def test_text_task_with_stored_vocab_skips_and_counts(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abcabc\nxyz!" * 20)
    vocab = CharTokenizer.from_text("abc\n").to_dict()
    task = build_task("text", path=str(p), vocab=vocab, seq_len=4)
    assert task.vocab_size == 4 and task.num_skipped == 4 * 20
    assert task.unseen_chars == {"x": 20, "y": 20, "z": 20, "!": 20}
    rebuilt = build_task("text", **json.loads(json.dumps(task.config())))
    assert rebuilt.tokenizer == task.tokenizer and rebuilt.num_skipped == task.num_skipped


# --- the character LM task -------------------------------------------------------------------

def test_split_is_90_10_by_position():
    task = build_task("shakespeare")
    text = shakespeare_text()
    n = round(len(text) * 0.9)
    assert task.decode(task.ids["train"]) == text[:n]
    assert task.decode(task.ids["val"]) == text[n:]


def test_random_windows_are_contiguous_slices_of_their_split(tmp_path):
    p = tmp_path / "t.txt"
    text = "".join(chr(97 + (i * 7919) % 26) for i in range(3000))  # aperiodic enough
    p.write_text(text)
    task = build_task("text", path=p, seq_len=16)
    train, val = text[:2700], text[2700:]
    for split, part in [("train", train), ("val", val)]:
        b = task.batch(split, 8, gen(1))
        assert b.x.shape == b.y.shape == (8, 16)
        for row_x, row_y in zip(b.x, b.y, strict=True):
            s = task.decode(row_x) + task.decode(row_y[-1:])
            assert s in part                                     # x then its next char
            assert task.decode(row_y) == s[1:]                   # y = x shifted by one


def test_text_batch_is_deterministic_given_the_generator():
    task = build_task("shakespeare", seq_len=32)
    a, b, c = (task.batch("train", 4, gen(s)) for s in (5, 5, 6))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_stream_chunks_continue_each_row_exactly(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("".join(chr(33 + (i * 31) % 90) for i in range(1003)))
    task = build_task("text", path=p, val_fraction=0.1)
    ids = task.ids["train"]
    B, T = 3, 7
    chunks = list(task.stream("train", B, T))
    N = len(ids) // B
    rows = [ids[b * N:(b + 1) * N] for b in range(B)]            # reference: plain slicing
    xs = torch.cat([c.x for c in chunks], dim=1)
    ys = torch.cat([c.y for c in chunks], dim=1)
    for b in range(B):
        assert torch.equal(xs[b], rows[b][:-1]) and torch.equal(ys[b], rows[b][1:])
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert torch.equal(nxt.x[:, 0], prev.y[:, -1])           # chunk k+1 continues chunk k
    assert all(c.x.shape[1] == T for c in chunks[:-1]) and 1 <= chunks[-1].x.shape[1] <= T


def test_batchify_rows_are_contiguous():
    ids = torch.arange(23)
    out = batchify(ids, 4)
    assert out.shape == (4, 5)
    assert out.tolist() == [list(range(b * 5, b * 5 + 5)) for b in range(4)]


def test_text_task_errors(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("abcdefghijklmnopqrstuvwxyz")
    task = build_task("text", path=p, seq_len=4)
    with pytest.raises(UserError, match="too long"):
        task.batch("val", 2, gen(), seq_len=10)
    with pytest.raises(UserError, match="split"):
        task.batch("test", 2, gen())
    with pytest.raises(UserError, match="batch_size"):
        task.batch("train", 0, gen())
    p.write_text("ab")
    with pytest.raises(UserError, match="too short"):
        build_task("text", path=p)


# --- batching ----------------------------------------------------------------------------------

def test_masked_mean_matches_formula_and_ignores_padding():
    g = gen(3)
    loss = torch.rand(4, 6, generator=g)
    mask = torch.rand(4, 6, generator=g) > 0.4
    ref = sum(float(loss[i, j]) for i in range(4) for j in range(6) if mask[i, j]) / int(mask.sum())
    assert masked_mean(loss, mask).item() == pytest.approx(ref, rel=1e-6)
    poisoned = loss.clone()
    poisoned[~mask] = float("nan")
    assert masked_mean(poisoned, mask).item() == pytest.approx(ref, rel=1e-6)
    assert masked_mean(loss, None).item() == pytest.approx(loss.mean().item())


def test_masked_loss_unchanged_by_padded_logits_and_targets():
    g = gen(4)
    B, T, V = 3, 5, 7
    logits = torch.randn(B, T, V, generator=g, requires_grad=True)
    y = torch.randint(0, V, (B, T), generator=g)
    lengths = torch.tensor([5, 2, 3])
    mask = torch.arange(T)[None] < lengths[:, None]

    def loss_of(lg, tg):
        return masked_mean(F.cross_entropy(lg.transpose(1, 2), tg, reduction="none"), mask)

    base = loss_of(logits, y)
    lg2 = logits.detach().clone()
    lg2[~mask] = torch.randn(int((~mask).sum()), V, generator=g) * 100
    y2 = y.clone()
    y2[~mask] = (y2[~mask] + 3) % V
    assert loss_of(lg2, y2).item() == pytest.approx(base.item(), rel=1e-6)
    ref = sum(F.cross_entropy(logits[b, :lengths[b]], y[b, :lengths[b]], reduction="sum")
              for b in range(B)) / lengths.sum()
    assert base.item() == pytest.approx(ref.item(), rel=1e-6)
    base.backward()
    assert torch.all(logits.grad[~mask] == 0)


def test_pack_matches_running_each_sequence_alone():
    g = gen(5)
    B, T, D, H = 3, 6, 4, 5
    x = torch.randn(B, T, D, generator=g)
    lengths = torch.tensor([3, 6, 1])
    lstm = torch.nn.LSTM(D, H, batch_first=True)
    _, (h, _) = lstm(pack(x, lengths))
    for b in range(B):
        _, (hb, _) = lstm(x[b:b + 1, :lengths[b]])
        torch.testing.assert_close(h[0, b], hb[0, 0])


def test_batch_to_device_keeps_values():
    b = Batch(x=torch.ones(2, 3, dtype=torch.long), y=torch.zeros(2, 3),
              lengths=torch.tensor([3, 2]))
    m = b.to("meta")
    assert m.x.device.type == "meta" and m.y.device.type == "meta"
    assert m.lengths.device.type == "cpu" and m.mask is None


# --- the registry ------------------------------------------------------------------------------

def test_bad_task_name_lists_valid_names():
    with pytest.raises(UserError) as e:
        build_task("shakspeare")
    for name in ["shakespeare", "text", "a13", "adding", "copy", "selective-copy", "reverse",
                 "classify"]:
        assert name in str(e.value)
    assert set(task_names()) == {"shakespeare", "text", "a13", "adding", "copy",
                                 "selective-copy", "reverse", "classify"}


@pytest.mark.parametrize("name, bad", [
    ("adding", {"lenght": 10}), ("adding", {"length": 1}), ("adding", {"length": "x"}),
    ("copy", {"delay": 0}), ("copy", {"delay": 2.5}), ("reverse", {"min_len": 5, "max_len": 3}),
    ("selective-copy", {"tokens": 0}), ("selective-copy", {"length": 3, "tokens": 4}),
    ("reverse", {"mode": "sort"}), ("classify", {"num_classes": 1}), ("a13", {"distance": 2}),
    ("a13", {"distance": [0, 5]}), ("a13", {"distance": [9, 4]}), ("a13", {"p_with": 2}),
    ("shakespeare", {"seq_len": 0}), ("shakespeare", {"val_fraction": 1.0}),
])
def test_bad_options_are_user_errors(name, bad):
    with pytest.raises(UserError) as e:
        build_task(name, **bad)
    assert "\n" not in str(e.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(UserError) as e:
        build_task("copy", length=5)
    assert "'length'" in str(e.value) and "delay" in str(e.value)


@pytest.mark.parametrize("name, cfg", [
    ("shakespeare", {"seq_len": 16}), ("a13", {"distance": [3, 9]}), ("a13", {"distance": 5}),
    ("adding", {"length": 12}), ("copy", {"delay": 7}), ("reverse", {"mode": "copy"}),
    ("classify", {"length": 20, "num_classes": 3}),
])
def test_config_is_json_and_rebuilds_an_identical_task(name, cfg):
    task = build_task(name, **cfg)
    cfg2 = json.loads(json.dumps(task.config()))
    again = build_task(name, **cfg2)
    assert again.config() == task.config()
    assert (again.vocab_size, again.num_outputs, again.kind) == \
           (task.vocab_size, task.num_outputs, task.kind)
    a, b = task.batch("train", 4, gen(9)), again.batch("train", 4, gen(9))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    if task.tokenizer is not None:
        assert again.tokenizer == task.tokenizer
    assert json.loads(json.dumps(task.describe()))["kind"] == task.kind


def test_kinds_and_sizes():
    assert build_task("shakespeare").kind == "lm"
    assert build_task("a13").kind == "lm"
    adding = build_task("adding")
    assert (adding.kind, adding.input_size, adding.vocab_size, adding.num_outputs) == \
           ("regress", 2, None, 1)
    assert build_task("copy").kind == "tagging"
    assert build_task("reverse").kind == "seq2seq"
    assert build_task("classify").kind == "classify"
    assert math.isclose(build_task("classify", num_classes=4).baseline, math.log(4))
