"""`rnnlab train / sample / evaluate` end to end, and every user error: one line, exit 2."""

import json
import math
import pickle

import pytest
import torch
from click.testing import CliRunner

from rnnlab import checkpoint
from rnnlab.cli import main
from rnnlab.data import shakespeare_text

TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-len", "12",
        "--eval-every", "3", "--checkpoint-every", "2", "--quiet", "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, match=None):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    if match is not None:
        assert match in lines[0], lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    p = d / "small.txt"
    p.write_text(shakespeare_text()[:3000], encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def text_run(corpus):
    out = corpus.parent / "textrun"
    r = run("train", "--text", corpus, *TINY, "--steps", 6, "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def adding_run(corpus):
    out = corpus.parent / "addrun"
    r = run("train", "--task", "adding", "--seq-len", 6, "--hidden-size", 4, "--num-layers", 1,
            "--batch-size", 4, "--steps", 2, "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_train_writes_a_run_directory(text_run):
    names = {p.name for p in text_run.iterdir()}
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "results.json"} <= names
    cfg = json.loads((text_run / "config.json").read_text())
    assert cfg["model"]["backbone"] == "lstm" and cfg["train"]["steps"] == 6
    lines = (text_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert checkpoint.load(text_run / "last.pt")["step"] == 6


def test_sample_end_to_end(text_run):
    r = run("sample", text_run, "--prime", "ROMEO:", "--length", 30, "--seed", 1)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ROMEO:") and len(r.stdout.rstrip("\n")) >= len("ROMEO:")
    assert len(r.stdout) == len("ROMEO:") + 30 + 1  # prime + 30 characters + newline
    again = run("sample", text_run / "last.pt", "--prime", "ROMEO:", "--length", 30, "--seed", 1)
    assert again.stdout == r.stdout  # seeded; a checkpoint file works like the run dir
    greedy = [run("sample", text_run, "--temperature", 0, "--length", 20, "--seed", s).stdout
              for s in (1, 2)]
    assert greedy[0] == greedy[1]  # temperature 0: the seed does not matter


def test_evaluate_json_on_a_text(text_run, tmp_path):
    text = shakespeare_text()[5000:5600]
    p = tmp_path / "eval.txt"
    p.write_text(text, encoding="utf-8")
    r = run("evaluate", text_run, "--text", p, "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert set(m) == {"loss", "acc", "bpc", "ppl", "tokens", "unseen_tokens", "unseen_fraction"}
    assert m["bpc"] == pytest.approx(m["loss"] / math.log(2), rel=1e-12)
    assert m["ppl"] == pytest.approx(math.exp(m["loss"]), rel=1e-12)
    assert m["tokens"] == len(text) - 1 and m["unseen_tokens"] == 0
    plain = run("evaluate", text_run, "--text", p)
    assert plain.exit_code == 0 and "bpc" in plain.stdout and "ppl" in plain.stdout
    val = json.loads(run("evaluate", text_run, "--json", "--batches", 1).stdout)
    assert {"loss", "acc", "bpc", "ppl", "tokens"} <= set(val) & set(m)  # one set of keys


def test_evaluate_validation_set(text_run, adding_run):
    r = run("evaluate", text_run, "--json", "--batches", 2)
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert {"loss", "acc", "bpc", "ppl"} <= set(m)
    r = run("evaluate", adding_run, "--batches", 1)
    assert r.exit_code == 0 and "mse" in r.stdout


def test_resume_continues_to_steps(corpus, tmp_path):
    out = tmp_path / "r"
    assert run("train", "--text", corpus, *TINY, "--steps", 3, "--out", out).exit_code == 0
    r = run("train", "--resume", out, "--steps", 5, "--quiet")
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out / "last.pt")["step"] == 5


def test_non_finite_run_stops_with_exit_1_and_keeps_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "boom"
    r = run("train", "--text", corpus, *TINY, "--steps", 50, "--checkpoint-every", 1,
            "--optimizer", "sgd", "--lr", "1e38", "--clip", 0, "--out", out)
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "non-finite" in lines[0] and "Traceback" not in r.output
    step = int(lines[0].split(" at step ")[1].split(";")[0])
    ck = checkpoint.load(out / "last.pt")
    assert str(out / "last.pt") in lines[0] and f"(step {ck['step']})" in lines[0]
    assert ck["step"] == step - 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_train_user_errors(corpus, text_run, tmp_path):
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\x01\x02abc")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases = [
        (["--text", tmp_path / "missing.txt"], "not found"),
        (["--text", binary], "binary"),
        (["--task", "text"], "--text"),
        (["--task", "adding", "--text", corpus], "--text"),
        (["--model", "transformer"], None),
        (["--lr", "-1"], None),
        (["--lr", "abc"], None),
        (["--steps", "0"], None),
        (["--clip", "-1"], None),
        (["--device", "tpu"], "device"),
        (["--resume", tmp_path / "nope"], "resume"),
        (["--resume", empty_dir], "no checkpoint"),
        (["--resume", text_run, "--steps", 2], "below"),
        (["--resume", text_run, "--lr", "0.1"], "--lr"),
        (["--text", corpus, "--out", text_run], "already holds a run"),
        (["--model", "gru", "--forget-bias", "1"], "forget-bias"),
        (["--task", "copy", "--seq-len", "5"], "seq-len"),
        (["--bogus-option"], None),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "not available"))
    for args, match in cases:
        assert_user_error(run("train", *args, "--quiet"), match)


def test_sample_and_evaluate_user_errors(text_run, adding_run, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((text_run / "last.pt").read_bytes()[:200])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\xff")
    cases = [
        (["sample", tmp_path / "nope"], "no such run"),
        (["sample", corrupt], "corrupt"),
        (["sample", foreign], "not an rnnlab checkpoint"),
        (["sample", adding_run], "text run"),
        (["sample", text_run, "--prime", "日本"], "never saw"),
        (["sample", text_run, "--temperature", "-1"], None),
        (["sample", text_run, "--top-k", "0"], None),
        (["sample", text_run, "--length", "x"], None),
        (["evaluate", tmp_path / "nope"], "no such run"),
        (["evaluate", text_run, "--text", tmp_path / "missing.txt"], "not found"),
        (["evaluate", text_run, "--text", binary], None),
        (["evaluate", adding_run, "--text", text_run / "config.json"], "not a text run"),
        (["evaluate", corrupt], "corrupt"),
    ]
    for args, match in cases:
        assert_user_error(run(*args), match)


def test_malicious_checkpoint_is_refused_by_the_cli(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "last.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "model": Evil()}, f)
    torch.save({"format": checkpoint.FORMAT, "model": Evil()}, tmp_path / "zip.pt")
    for p in (tmp_path, tmp_path / "zip.pt"):
        for verb in ("sample", "evaluate"):
            assert_user_error(run(verb, p))
    assert_user_error(run("train", "--resume", tmp_path, "--quiet"))
    assert not marker.exists()


def test_evaluate_skips_unseen_characters_with_a_note(text_run, tmp_path):
    text = shakespeare_text()[:300] + "日本\u00e9"  # three characters the tiny run never saw
    p = tmp_path / "unseen.txt"
    p.write_text(text, encoding="utf-8")
    r = run("evaluate", text_run, "--text", p, "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["tokens"] == len(text) - 3 - 1
    assert m["unseen_tokens"] == 3 and m["unseen_fraction"] == pytest.approx(3 / len(text))
    assert "skipped 3" in r.stderr


def test_train_and_sample_with_a_scan_backbone(corpus, tmp_path):
    out = tmp_path / "lru"
    r = run("train", "--text", corpus, *TINY, "--model", "lru", "--steps", 3, "--out", out)
    assert r.exit_code == 0, r.output
    r = run("sample", out, "--prime", "ROMEO", "--length", 20, "--seed", 1)
    assert r.exit_code == 0 and r.stdout.startswith("ROMEO") and len(r.stdout) >= 25
    r = run("train", "--task", "selective-copy", "--model", "mingru", "--hidden-size", 8,
            "--batch-size", 4, "--steps", 2, "--quiet", "--out", tmp_path / "sc")
    assert r.exit_code == 0, r.output
    assert_user_error(run("train", "--model", "lru", "--init", "orthogonal", "--steps", 1,
                          "--out", tmp_path / "x"), "recurrent_init")
