"""rnnlab.explorer and `rnnlab explore`: one self-contained page, its data exactly what the model
computes, and every user error one line (the page in a real browser: test_explorer_browser.py)."""

import base64
import gzip
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_report import external_refs  # every link out of a page
from torch import nn

import rnnlab
from rnnlab import explorer, models, stepwise
from rnnlab.cli import main
from rnnlab.data import CharTokenizer, WordTokenizer, shakespeare_text
from rnnlab.errors import UserError

TINY = ["--hidden-size", "8", "--num-layers", "1", "--batch-size", "4", "--seq-len", "12",
        "--eval-every", "3", "--checkpoint-every", "3", "--quiet", "--device", "cpu"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def user_error(result, match):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="rnnlab-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def f32(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("explore")
    corpus = d / "small.txt"
    corpus.write_text(shakespeare_text()[:3000], encoding="utf-8")
    out = {}
    for name, extra in {"char": [], "word": ["--tokens", "word"],
                        "attention": ["--model", "attention"]}.items():
        r = cli("train", "--text", corpus, *TINY, *extra, "--steps", 3, "--out", d / name)
        assert r.exit_code == 0, r.output
        out[name] = d / name
    r = cli("train", "--task", "adding", "--seq-len", 6, "--hidden-size", 4, "--num-layers", 1,
            "--batch-size", 4, "--steps", 2, "--quiet", "--out", d / "adding")
    assert r.exit_code == 0, r.output
    out["adding"], out["corpus"] = d / "adding", corpus
    return out


def test_quantise_within_half_a_step():
    v = np.random.default_rng(0).normal(size=(50, 7)) * np.arange(1, 8)
    v[:, 3] = 2.5  # a constant unit
    q, lo, hi = explorer.quantise(v)
    assert q.dtype == np.uint8 and lo.dtype == hi.dtype == np.float32
    back = explorer.dequantise(q, lo, hi)
    step = (hi.astype(np.float64) - lo) / 255
    assert np.all(np.abs(back - v) <= step / 2 + 1e-6 * np.abs(v).max())
    assert np.allclose(back[:, 3], 2.5)


def test_the_page_holds_the_model_numbers_and_nothing_external():
    torch.manual_seed(0)
    text = "ab</script><!-- c\u2028ab\nba"  # what must not end the script early
    tok = CharTokenizer.from_text(text)
    model = models.build("lm", vocab_size=tok.vocab_size, backbone="lstm", hidden_size=6,
                         num_layers=2)
    html, facts = explorer.build(model, tok, text, window=5, positions=10)
    assert "</script><!--" not in html.split('id="rnnlab-data">')[1].split("</script>")[0]
    assert not external_refs(html)
    d = page_data(html)
    ids = tok.encode(text)
    T = ids.numel()
    assert d["tokens"] == list(text) and d["seps"] is None
    assert facts["tokens"] == T and facts["units"] == 6 and facts["layers"] == 2
    rec = stepwise.record(model, ids)
    np.testing.assert_allclose(f32(d["loss"])[1:], rec.loss[1:], rtol=1e-6)
    states = gzip.decompress(base64.b64decode(d["states"]))
    for k, layer in enumerate(d["layers"]):
        assert layer["label"] == f"backbone · layer {k}" and layer["units"] == 6
        assert list(layer["quantities"]) == ["h", "c", "i", "f", "g", "o"]
        for name, e in layer["quantities"].items():
            a, b = d["offsets"][e["blob"]], d["offsets"][e["blob"] + 1]
            q = np.frombuffer(states[a:b], np.uint8).reshape(T, 6)
            exact = rec.layers[k].h if name == "h" else rec.layers[k].c if name == "c" else \
                rec.layers[k].gates[name]
            back = explorer.dequantise(q, f32(e["lo"]), f32(e["hi"]))
            assert np.abs(back - exact).max() <= (exact.max(0) - exact.min(0)).max() / 500
            np.testing.assert_allclose(f32(e["mean"]), exact.mean(1), rtol=1e-5, atol=1e-7)
            assert e["kind"] == {"h": "signed", "c": "free", "g": "signed"}.get(name, "unit")
    sal = d["saliency"]
    assert sal["positions"] == stepwise.default_positions(T, 10) and sal["window"] == 5
    g = stepwise.gradients(model, ids, sal["positions"], 5, rec)
    np.testing.assert_allclose(f32(sal["values"]).reshape(g.saliency.shape), g.saliency,
                               rtol=1e-6)


def test_explore_a_torch_nn_model_with_a_word_tokenizer(tmp_path):
    text = "To be, or not to be: that is the question.\nWhether 'tis nobler\n" * 2
    tok = WordTokenizer.from_text(text)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(tok.vocab_size, 6)
            self.lstm = nn.LSTM(6, 5, batch_first=True)
            self.out = nn.Linear(5, tok.vocab_size)

        def forward(self, ids):
            return self.out(self.lstm(self.emb(ids))[0])

    path = rnnlab.explore(LM(), tok, text, tmp_path / "sub" / "page.html", window=4,
                          positions="all")
    d = page_data(path.read_text(encoding="utf-8"))
    assert d["tokens"][:4] == ["To", "be", ",", "or"] and d["seps"][:4] == ["", " ", "", " "]
    assert d["layers"][0]["label"] == "lstm · layer 0" and d["meta"]["tokenizer"] == "word"
    assert d["saliency"]["positions"] == list(range(1, len(d["tokens"])))
    with pytest.raises(UserError, match="not in the model's vocabulary"):
        explorer.build(LM(), tok, "zebra giraffe okapi quagga")
    with pytest.raises(UserError, match="empty"):
        explorer.build(LM(), tok, "")
    with pytest.raises(UserError, match="window"):
        explorer.build(LM(), tok, text, window=0)


def test_rnnlab_explore_on_runs(runs, tmp_path):
    r = cli("explore", runs["char"], "--length", 40, "--window", 8, "--positions", 10)
    assert r.exit_code == 0, r.output
    page = runs["char"] / "explorer.html"
    assert f"explorer: {page}" in r.stdout and "40 tokens, 8 units" in r.stdout
    d = page_data(page.read_text(encoding="utf-8"))
    assert len(d["tokens"]) == 40 and "validation text" in d["meta"]["note"]
    r = cli("explore", runs["char"], "--prime", "ROMEO", "--length", 20, "--out",
            tmp_path / "p.html", "--seed", 3)
    assert r.exit_code == 0, r.output
    d = page_data((tmp_path / "p.html").read_text(encoding="utf-8"))
    assert "".join(d["tokens"][:5]) == "ROMEO" and len(d["tokens"]) == 20
    r = cli("explore", runs["word"], "--text", runs["corpus"], "--length", 30, "--out",
            tmp_path / "w.html", "--positions", 0)
    assert r.exit_code == 0, r.output
    d = page_data((tmp_path / "w.html").read_text(encoding="utf-8"))
    assert d["saliency"] is None and d["tokens"][0] == WordTokenizer.tokens(
        runs["corpus"].read_text())[0]
    assert explorer.page_for_run(runs["char"], tmp_path / "small.html", length=30) == \
        tmp_path / "small.html"
    assert explorer.page_for_run(runs["adding"]) is None
    assert explorer.page_for_run(runs["attention"]) is None


def test_rnnlab_explore_user_errors(runs, tmp_path):
    user_error(cli("explore", runs["char"], "--text", runs["corpus"], "--prime", "a"),
               "exclude each other")
    user_error(cli("explore", runs["adding"]), "needs a text run")
    user_error(cli("explore", runs["attention"]), "no recurrent state")
    user_error(cli("explore", runs["char"], "--text", tmp_path / "none.txt"), "not found")
    user_error(cli("explore", runs["char"], "--prime", "ROMEO\u00e9\u00e9"), "never saw")
    user_error(cli("explore", runs["char"], "--positions", "some"), "neither a number")
    user_error(cli("explore", tmp_path / "nothing"), "nothing")
    bare = tmp_path / "bare.pt"
    bare.write_bytes((runs["char"] / "last.pt").read_bytes())
    user_error(cli("explore", bare), "--out")
