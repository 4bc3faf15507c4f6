"""The command line a char-rnn or nanoGPT user expects: fresh samples, top-p, several samples,
config files, word-level text, export with checked logits, mixed precision, through the CLI."""

import importlib.util
import json
import os
import re

import pytest
import torch
from click.testing import CliRunner

from rnnlab import checkpoint, models, runs, train
from rnnlab.cli import main
from rnnlab.data import WordTokenizer, build_task, shakespeare_text
from rnnlab.errors import UserError

TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-len", "12",
        "--eval-every", "3", "--checkpoint-every", "3", "--quiet", "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def user_error(result, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
        result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("tour") / "small.txt"
    p.write_text(shakespeare_text()[:6000], encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def char_run(corpus):
    out = corpus.parent / "chars"
    ok(run("train", "--text", corpus, *TINY, "--steps", 6, "--out", out))
    return out


@pytest.fixture(scope="module")
def word_run(corpus):
    out = corpus.parent / "words"
    ok(run("train", "--text", corpus, "--tokens", "word", *TINY, "--steps", 6, "--out", out))
    return out


# ---- sample ----------------------------------------------------------------------------------

def test_sample_is_fresh_unless_seeded_and_verbose_prints_the_seed(char_run):
    a, b = (ok(run("sample", char_run, "--length", 80, "--temperature", 1, "--verbose"))
            for _ in range(2))
    assert a.stdout != b.stdout  # a fresh seed each time, as char-rnn and nanoGPT
    seed = int(re.fullmatch(r"seed: (\d+)", a.stderr.strip()).group(1))
    again = ok(run("sample", char_run, "--length", 80, "--temperature", 1, "--seed", seed))
    assert again.stdout == a.stdout  # the printed seed redraws it


def test_top_p_keeps_the_nucleus_and_num_samples_draws_several(char_run):
    r = runs.load_run(char_run)
    ids = r.tokenizer.encode("ROMEO:")
    expect, state = [], None
    with torch.no_grad():  # the reference: greedy decoding, one step at a time
        logits, state = r.model(ids.view(1, -1))
        for _ in range(30):
            nxt = logits[0, -1].argmax().view(1, 1)
            expect.append(int(nxt))
            logits, state = r.model(nxt, state)
    tiny_p = ok(run("sample", char_run, "--prime", "ROMEO:", "--length", 30, "--top-p", 1e-9))
    assert tiny_p.stdout == "ROMEO:" + r.tokenizer.decode(expect) + "\n"  # only the top token
    many = ok(run("sample", char_run, "--prime", "ROMEO:", "--length", 40, "--num-samples", 3,
                  "--temperature", 1, "--seed", 5)).stdout
    parts = re.split(r"--- sample \d ---\n", many)[1:]
    assert len(parts) == 3 and all(p.startswith("ROMEO:") for p in parts)
    assert len(set(parts)) == 3  # independent draws
    user_error(run("sample", char_run, "--top-p", "1.5"), "top-p")


# ---- config files ----------------------------------------------------------------------------

def test_a_toml_config_file_with_command_line_overrides(corpus, tmp_path):
    cfg = tmp_path / "conf" / "gru.toml"
    cfg.parent.mkdir()
    cfg.write_text(f"""
[task]
name = "text"
path = "{os.path.relpath(corpus, cfg.parent)}"  # relative to this file
seq_len = 12

[model]
backbone = "gru"
hidden_size = 12
num_layers = 1

[train]
steps = 4
batch_size = 3
lr = 0.01
eval_every = 2
""", encoding="utf-8")
    out = tmp_path / "run"
    ok(run("train", "--config", cfg, "--hidden-size", 6, "--quiet", "--out", out))
    c = json.loads((out / "config.json").read_text())
    assert c["model"]["backbone"] == "gru" and c["model"]["hidden_size"] == 6  # line wins
    assert (c["train"]["steps"], c["train"]["batch_size"], c["train"]["lr"]) == (4, 3, 0.01)
    assert c["task"]["path"] == str(corpus) and c["task"]["seq_len"] == 12
    assert checkpoint.load(out / "last.pt")["step"] == 4
    for text, key in (("[model]\nhiden_size = 3\n", "model.hiden_size"),
                      ("[train]\nlearning_rate = 1\n", "train.learning_rate"),
                      ("lr = 1\n", "'lr'"),
                      ("[task]\nname = 'adding'\nseq_len = 5\n", "task.seq_len")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        user_error(run("train", "--config", bad, "--quiet", "--out", tmp_path / "x"),
                   "unknown key", key)
    bad.write_text("[model\n")
    user_error(run("train", "--config", bad, "--quiet"), "not valid TOML")
    assert not (tmp_path / "x").exists()


def test_a_runs_own_config_json_reproduces_it(char_run, tmp_path):
    out = tmp_path / "again"
    ok(run("train", "--config", char_run / "config.json", "--quiet", "--out", out))
    a, b = checkpoint.load(char_run / "last.pt"), checkpoint.load(out / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])  # the same run, bit for bit
    wider = tmp_path / "wider"
    ok(run("train", "--config", char_run / "config.json", "--hidden-size", 10, "--steps", 2,
           "--quiet", "--out", wider))
    c = json.loads((wider / "config.json").read_text())
    assert c["model"]["hidden_size"] == 10 and c["model"]["embed_size"] == 10  # re-derived
    user_error(run("train", "--resume", char_run, "--config", char_run / "config.json"),
               "--config cannot be changed")


# ---- word-level text -------------------------------------------------------------------------

def test_word_tokenizer_splits_on_whitespace_and_punctuation_and_joins_back():
    text = "Is this a dagger which I see before me,\nThe handle toward my hand? 'Tis o'er.\n"
    tok = WordTokenizer.from_text(text)
    assert tok.tokens(text) == ["Is", "this", "a", "dagger", "which", "I", "see", "before",
                                "me", ",", "\n", "The", "handle", "toward", "my", "hand", "?",
                                "'", "Tis", "o'er", ".", "\n"]
    assert tok.decode(tok.encode(text)) == text
    small = WordTokenizer.from_text("a a a b b c", max_vocab=3)
    assert small.words == ["<unk>", "a", "b"]
    assert small.encode("a c b", unknown="replace").tolist() == [1, 0, 2]
    assert small.encode("a c b", unknown="skip").tolist() == [1, 2]
    with pytest.raises(UserError, match="'c'"):
        small.encode("a c")
    assert WordTokenizer.from_dict(tok.to_dict()) == tok


def test_a_word_level_run_trains_samples_and_evaluates_per_token_and_per_char(word_run, corpus):
    r = runs.load_run(word_run)
    assert isinstance(r.tokenizer, WordTokenizer) and r.config["task"]["tokens"] == "word"
    ref = build_task("text", path=str(corpus), tokens="word")
    assert r.tokenizer == ref.tokenizer and r.model.config["vocab_size"] == ref.vocab_size
    s = ok(run("sample", word_run, "--prime", "CITIZEN", "--length", 60, "--seed", 2)).stdout
    assert s.startswith("CITIZEN") and " ," not in s and " ." not in s and "  " not in s
    assert len(WordTokenizer.tokens(s)) >= 61  # the prime + 60 words and marks
    m = json.loads(ok(run("evaluate", word_run, "--text", corpus, "--json")).stdout)
    text = corpus.read_text(encoding="utf-8")
    assert m["tokens"] == len(WordTokenizer.tokens(text)) - 1
    assert m["bits_per_token"] == pytest.approx(m["loss"] / 0.6931471805599453)
    assert m["bpc"] == pytest.approx(m["bits_per_token"] * m["tokens"] / len(text))
    val = json.loads(ok(run("evaluate", word_run, "--json", "--batches", 2)).stdout)
    assert {"loss", "acc", "bpc", "ppl", "bits_per_token"} <= set(val)
    assert val["bpc"] < val["bits_per_token"]  # a word is several characters
    user_error(run("train", "--task", "adding", "--tokens", "word", "--quiet"), "--tokens")


# ---- export ----------------------------------------------------------------------------------

def _engine_logits(model, x):
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = "engine"  # rnnlab's own BPTT loop: the reference
    with torch.no_grad():
        out = model(x)
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn", "attention"])
def test_export_torchscript_gives_the_runs_logits(corpus, tmp_path, model):
    out = tmp_path / "run"
    ok(run("train", "--text", corpus, *TINY, "--model", model, "--num-layers", 2, "--steps", 2,
           "--out", out))
    res = ok(run("export", out, "--format", "torchscript", "--out", tmp_path / "lm.pt"))
    assert "logits equal the run's" in res.stdout
    extra = {"rnnlab.json": ""}
    ts = torch.jit.load(str(tmp_path / "lm.pt"), _extra_files=extra)
    assert json.loads(extra["rnnlab.json"])["config"]["model"]["backbone"] == model
    r = runs.load_run(out)
    x = r.tokenizer.encode(shakespeare_text()[100:150]).view(2, 25)
    torch.testing.assert_close(ts(x), _engine_logits(r.model, x), rtol=1e-5, atol=1e-5)


def test_export_a_classifier_and_refuse_seq2seq(tmp_path):
    out = tmp_path / "cls"
    ok(run("train", "--task", "classify", "--seq-len", 8, "--hidden-size", 6, "--num-layers", 1,
           "--batch-size", 4, "--steps", 2, "--quiet", "--out", out))
    ok(run("export", out, "--out", tmp_path / "cls.pt"))
    r = runs.load_run(out)
    x = r.task.batch("val", 3, torch.Generator().manual_seed(0)).x
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "cls.pt"))(x),
                               _engine_logits(r.model, x), rtol=1e-5, atol=1e-5)
    s2s = tmp_path / "s2s"
    ok(run("train", "--task", "reverse", "--hidden-size", 6, "--num-layers", 1, "--batch-size",
           4, "--steps", 1, "--quiet", "--out", s2s))
    user_error(run("export", s2s, "--out", tmp_path / "s.pt"), "seq2seq")
    assert not (tmp_path / "s.pt").exists()


HAVE_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx and onnxruntime are not installed "
                    "(pip install \"rnnlab[onnx]\")")
@pytest.mark.parametrize("model", ["lstm", "attention"])
def test_export_onnx_gives_the_runs_logits_in_onnxruntime(corpus, tmp_path, model):
    import onnxruntime

    out = tmp_path / "run"
    ok(run("train", "--text", corpus, *TINY, "--model", model, "--steps", 2, "--out", out))
    ok(run("export", out, "--format", "onnx", "--out", tmp_path / "lm.onnx"))
    r = runs.load_run(out)
    x = r.tokenizer.encode(shakespeare_text()[100:160]).view(3, 20)
    sess = onnxruntime.InferenceSession(str(tmp_path / "lm.onnx"),
                                        providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])
    torch.testing.assert_close(got, _engine_logits(r.model, x), rtol=1e-4, atol=1e-4)


def test_export_onnx_without_the_packages_is_one_line(char_run, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_onnx(name, *a, **k):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    user_error(run("export", char_run, "--format", "onnx", "--out", tmp_path / "m.onnx"),
               'pip install "rnnlab[onnx]"')


# ---- mixed precision -------------------------------------------------------------------------

def test_dtype_bfloat16_trains_under_autocast_with_float32_weights(corpus, tmp_path):
    out = tmp_path / "bf16"
    ok(run("train", "--text", corpus, *TINY, "--steps", 3, "--dtype", "bfloat16", "--out", out))
    ck = checkpoint.load(out / "last.pt")
    assert ck["config"]["train"]["dtype"] == "bfloat16"
    assert all(v.dtype == torch.float32 for v in ck["model"].values())  # master weights
    task = build_task("text", path=str(corpus), seq_len=12)
    seen = []
    model = models.for_task(task, "lstm", hidden_size=8, num_layers=1)
    model.decoder.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    train.fit(model, task, steps=2, batch_size=2, eval_every=100, dtype="bfloat16")
    assert seen and all(d == torch.bfloat16 for d in seen)  # the products ran in bfloat16


def test_dtype_float64_trains_and_loads_in_double(corpus, tmp_path):
    out = tmp_path / "f64"
    ok(run("train", "--text", corpus, *TINY, "--steps", 3, "--dtype", "float64", "--out", out))
    assert all(v.dtype == torch.float64 for v in checkpoint.load(out / "last.pt")["model"]
               .values() if v.is_floating_point())
    assert next(runs.load_run(out).model.parameters()).dtype == torch.float64
    ok(run("evaluate", out, "--batches", 1))
    ok(run("train", "--resume", out, "--steps", 5, "--quiet"))
    add = tmp_path / "adding"
    ok(run("train", "--task", "adding", "--seq-len", 6, "--hidden-size", 4, "--num-layers", 1,
           "--batch-size", 4, "--steps", 2, "--dtype", "float64", "--quiet", "--out", add))
    user_error(run("train", "--text", corpus, *TINY, "--dtype", "float16"), "--dtype")


def test_bfloat16_is_refused_where_the_explicit_engine_would_run(corpus):
    task = build_task("text", path=str(corpus), seq_len=12)
    model = models.for_task(task, "gru", hidden_size=8, num_layers=1)
    model.backbone.backend = "engine"
    with pytest.raises(UserError, match="backend='engine'.*float32 or float64"):
        train.fit(model, task, steps=1, batch_size=2, dtype="bfloat16")


@pytest.mark.cuda
def test_dtype_bfloat16_on_cuda(corpus, tmp_path):
    out = tmp_path / "cuda"
    ok(run("train", "--text", corpus, *TINY[:-2], "--device", "cuda", "--steps", 3, "--dtype",
           "bfloat16", "--out", out))
    assert checkpoint.load(out / "last.pt")["step"] == 3


def test_the_readmes_config_file_is_valid(tmp_path):
    from pathlib import Path

    from rnnlab import configfile

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (toml,) = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    (tmp_path / "gru.toml").write_text(toml, encoding="utf-8")
    (tmp_path / "tempest.txt").write_text(shakespeare_text()[-5000:], encoding="utf-8")
    cfg = configfile.read(tmp_path / "gru.toml")
    assert cfg["task"]["path"] == str(tmp_path / "tempest.txt")
    assert (cfg["model"]["backbone"], cfg["train"]["dtype"]) == ("gru", "float32")
    runs.new_config(cfg["task"].pop("name"), cfg["task"], cfg["model"], **cfg["train"])
