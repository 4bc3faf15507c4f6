"""The explorer page in a real browser (headless Chromium driven by Playwright): hover, click,
drag and keys, and what the page then shows checked against numbers computed here in Python:
plain autograd on the untouched model, torch.nn's own LSTM, rnnlab.trace.

Skipped, saying why, only where Playwright or a Chromium is missing (``.ci/run`` installs
Debian's chromium; ``pip install -e ".[dev]"`` installs Playwright, which drives that system
browser and never downloads one). One browser launch for the whole module, one small page.
"""

import json
import shutil
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnlab
from rnnlab.data import CharTokenizer, shakespeare_text

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WINDOW, K = 10, 4  # the page's saliency window; units listed for a span


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class CharLM(nn.Module):
    """A plain PyTorch model, float64: embedding -> 2-layer torch.nn.LSTM -> linear."""

    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 6)
        self.lstm = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8, vocab)

    def forward(self, ids):
        return self.head(self.lstm(self.embed(ids))[0])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (.ci/run installs it: apt-get install -y "
                    "chromium)")
    torch.manual_seed(0)
    text = shakespeare_text()[:90]
    tok = CharTokenizer.from_text(text)
    model = CharLM(tok.vocab_size).double()
    path = rnnlab.explore(model, tok, text, tmp_path_factory.mktemp("page") / "p.html",
                          window=WINDOW, positions="all")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()), executable_path=exe,
            args=ARGS, headless=True, viewport={"width": 1300, "height": 850})
        try:
            page = ctx.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_function("document.documentElement.dataset.ready", timeout=30000)
            assert page.evaluate("document.documentElement.dataset.ready") == "1", \
                page.inner_text("#status")
            yield {"page": page, "model": model, "ids": tok.encode(text), "errors": errors,
                   "context": ctx, "dir": path.parent}
        finally:
            ctx.close()


def tok(page, t):
    return page.locator("#text .tok").nth(t)


def value(page, sel) -> float:
    return float(page.get_attribute(sel, "data-value"))


def saliency_by_autograd(model, ids, s):
    x = model.embed(ids.view(1, -1)).detach().requires_grad_(True)
    loss = F.cross_entropy(model.head(model.lstm(x)[0])[0, s - 1], ids[s])
    (g,) = torch.autograd.grad(loss, x)
    return g[0].norm(dim=-1).numpy(), loss.item()


def test_clicked_position_shows_the_saliency_autograd_gives(setup):
    page, model, ids = setup["page"], setup["model"], setup["ids"]
    page.click("#qty button[data-q='saliency']")
    for s in (6, 40):  # s = 40 is restarted from the full forward's states (window 10)
        tok(page, s).click()
        assert page.evaluate("document.querySelector('.tok.sel')._t") == s
        ref, loss = saliency_by_autograd(model, ids, s)
        for t in range(max(0, s - WINDOW), s):
            tok(page, t).hover()
            assert value(page, "#ro-sal") == pytest.approx(ref[t], rel=1e-6)
            assert page.inner_text("#ro-t") == f"t = {t}"
        assert value(page, "#ro-loss") == pytest.approx(F.cross_entropy(
            model(ids.view(1, -1))[0, :-1], ids[1:], reduction="none")[t - 1].item(), rel=1e-6)
        if s > WINDOW:  # beyond the window: nothing shown, and the page says so
            tok(page, s - WINDOW - 1).hover()
            assert "not computed" in page.inner_text("#ro-sal")
        # the strongest colour is where autograd's saliency is largest
        colours = page.evaluate(f"""Array.from(document.querySelectorAll('.tok')).slice(0, {s})
            .map(e => getComputedStyle(e).backgroundColor)""")
        darkest = min(range(len(colours)), key=lambda t: sum(
            int(c) for c in colours[t][4:-1].split(",")) if colours[t].startswith("rgb(")
            else 999)
        assert darkest == int(np.argmax(np.where(np.arange(s) >= s - WINDOW, ref[:s], 0)))
    assert not setup["errors"]


def test_panel_shows_the_gradient_rnnlab_trace_records(setup):
    page, model, ids = setup["page"], setup["model"], setup["ids"]
    s = 40
    page.click("#qty button[data-q='h']")
    tok(page, s).click()
    with rnnlab.trace(model) as tr:
        F.cross_entropy(model(ids.view(1, -1))[0, s - 1], ids[s]).backward()
    grad_h = tr.grad_h.numpy()  # (2, T): ‖∂L_s/∂h_t‖ from the engine's BPTT loop
    for k in (0, 1):
        page.select_option("#layer", str(k))
        assert value(page, "#gh-last") == pytest.approx(grad_h[k, s - 1], rel=1e-6)
        curve = page.get_attribute(f"#grad-chart path[data-name='‖∂L_s/∂h_t‖ lstm · layer {k}']",
                                   "data-values")
        np.testing.assert_allclose(json.loads(curve), grad_h[k, s - WINDOW: s], rtol=1e-6)


def top_units(h, a, b, k):
    """(departure d, in standard deviations z, the k units of largest |z|) of the span [a, b]."""
    d = h[a: b + 1].mean(0) - h.mean(0)
    z = d / h.std(0)
    return d, z, sorted(range(h.shape[1]), key=lambda j: (-abs(z[j]), j))[:k]


def test_a_selected_span_lists_the_top_units(setup):
    page, model, ids = setup["page"], setup["model"], setup["ids"]
    with torch.no_grad():  # torch.nn's own LSTM: the top layer's h_t is its output
        h = model.lstm(model.embed(ids.view(1, -1)))[0][0].numpy()
    page.select_option("#layer", "1")
    page.keyboard.press("Escape")
    page.fill("#topk", str(K))
    page.press("#topk", "Enter")
    a, b = 20, 31
    tok(page, a).hover()
    page.mouse.down()
    tok(page, b).hover()
    page.mouse.up()
    assert page.locator(".tok.span").count() == b - a + 1
    listed = [int(x) for x in page.eval_on_selector_all("#units-list li",
                                                         "ls => ls.map(l => l.dataset.unit)")]
    d, z, best = top_units(h, a, b, K)
    err = (h.max(0) - h.min(0)) / 510  # what one byte per value can move a value (or mean) by
    zerr = 4 * err / h.std(0)  # ... and a departure in standard deviations
    order = sorted(abs(z), reverse=True)
    for j in listed:  # each listed unit is among the top K, up to quantisation
        assert abs(z[j]) >= order[K - 1] - zerr[j] - zerr[best[K - 1]]
    assert listed[0] == best[0] and len(listed) == K
    shown = [float(x) for x in page.eval_on_selector_all("#units-list li",
                                                         "ls => ls.map(l => l.dataset.score)")]
    np.testing.assert_allclose(shown, z[listed], atol=zerr.max())
    # the other spans where they are on: every listed unit beyond half its departure there
    for li in page.locator("#matches li").all():
        x, y = int(li.get_attribute("data-start")), int(li.get_attribute("data-end"))
        for t in range(x, y + 1):
            for j in listed:
                assert np.sign(d[j]) * (h[t, j] - h[:, j].mean()) >= abs(d[j]) / 2 - 3 * err[j]
    # click a listed unit: the text is coloured by it, the readout shows its h_t
    page.locator("#units-list li").first.click()
    assert page.input_value("#unit") == str(listed[0])
    tok(page, 25).hover()
    assert value(page, "#ro-value") == pytest.approx(h[25, listed[0]], abs=err[listed[0]])


def test_keyboard_alone(setup):
    page = setup["page"]
    page.keyboard.press("Escape")
    page.click("#qty button[data-q='h']")
    tok(page, 10).click()
    page.focus("#text")
    sel = "document.querySelector('.tok.sel')._t"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate(sel) == 11
    for _ in range(3):
        page.keyboard.press("Shift+ArrowRight")
    assert page.locator(".tok.span").count() == 4 and page.locator("#units-list li").count()
    unit = int(page.input_value("#unit"))
    page.keyboard.press("ArrowUp")
    assert int(page.input_value("#unit")) == (unit + 1) % 8
    layer = page.input_value("#layer")
    page.keyboard.press("]")
    assert page.input_value("#layer") != layer
    for key, q in (("f", "f"), ("c", "c"), ("l", "loss"), ("s", "saliency"), ("h", "h")):
        page.keyboard.press(key)
        assert page.get_attribute("#qty button.on", "data-q") == q
    page.keyboard.press("m")
    assert page.is_checked("#mean")
    page.keyboard.press("Escape")
    assert page.locator(".tok.span").count() == 0
    page.keyboard.press("?")
    assert page.is_visible("#help")
    assert not setup["errors"]


@pytest.mark.parametrize("backbone", ["rnn", "gru", "mingru", "lru", "bidirectional"])
def test_every_kind_of_layer_opens_and_answers(setup, backbone):
    """Each layer kind's page (its own gates, or none; the LRU's free-range state; a
    bidirectional model's full-length rows) opens without a script error and answers keys."""
    torch.manual_seed(1)
    text = shakespeare_text()[:50]
    tok_ = CharTokenizer.from_text(text)
    if backbone == "bidirectional":
        model = CharLM(tok_.vocab_size)
        model.lstm = nn.GRU(6, 4, bidirectional=True, batch_first=True)
        model.head = nn.Linear(8, tok_.vocab_size)
    else:
        model = rnnlab.models.build("lm", vocab_size=tok_.vocab_size, backbone=backbone,
                                    hidden_size=4, num_layers=2)
    path = rnnlab.explore(model, tok_, text, setup["dir"] / f"{backbone}.html", window=8)
    page = setup["context"].new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri())
        page.wait_for_function("document.documentElement.dataset.ready", timeout=30000)
        assert page.evaluate("document.documentElement.dataset.ready") == "1"
        n = page.locator("#layer option").count()
        assert n == 2  # two layers, or two directions
        tok(page, 30).click()
        for key in ("s", "l", "h", "]", "ArrowUp", "m", "Shift+ArrowRight", "Shift+ArrowRight"):
            page.keyboard.press(key)
        tok(page, 20).hover()
        assert page.locator("#units-list li").count() == 4  # (the span units box: 5 > 4 units)
        assert page.locator("#grad-chart path").count() >= n
        assert not errors
    finally:
        page.close()
