"""The training loop: losses against torch references, clipping, schedule, stopping rules,
exact resume (20 + 20 == 40), kill -9 safety, sampling and text scoring."""

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnlab import checkpoint, models, train
from rnnlab.data import Batch, CharTokenizer, shakespeare_text


def tiny_lm(vocab=7, hidden=6, dropout=0.0):
    torch.manual_seed(0)
    return models.build("lm", vocab_size=vocab, backbone="lstm", hidden_size=hidden,
                        num_layers=1, dropout=dropout)


def text_file(tmp_path, n=3000, name="small.txt"):
    p = tmp_path / name
    p.write_text(shakespeare_text()[:n], encoding="utf-8")
    return p


def tiny_config(path, steps=40, **train_options):
    opts = dict(steps=steps, batch_size=4, seq_len=12, eval_every=10, eval_batches=2,
                checkpoint_every=10, seed=3, lr=1e-2)
    opts.update(train_options)
    return train.new_config("text", {"path": str(path)},
                            {"backbone": "lstm", "hidden_size": 10, "num_layers": 1,
                             "dropout": 0.2}, **opts)


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


# ---- schedule, losses and metrics against independent references --------------------------

def test_lr_schedule_closed_form():
    assert train.lr_at(0, 1.0, warmup=4, decay=None) == pytest.approx(0.25)
    assert train.lr_at(3, 1.0, warmup=4, decay=None) == pytest.approx(1.0)
    assert train.lr_at(50, 1.0, warmup=0, decay="none", total=100) == 1.0
    # cosine: m + (1-m)·½(1+cos(πp)), m = 0.1
    assert train.lr_at(10, 2.0, warmup=10, decay="cosine", total=110) == pytest.approx(2.0)
    assert train.lr_at(60, 2.0, warmup=10, decay="cosine", total=110) == pytest.approx(1.1)
    assert train.lr_at(110, 2.0, warmup=10, decay="cosine", total=110) == pytest.approx(0.2)


def test_lm_masked_loss_accuracy_and_dependency_accuracy():
    model = tiny_lm()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 7, (3, 9), generator=g)
    y = torch.randint(0, 7, (3, 9), generator=g)
    mask = torch.rand(3, 9, generator=g) > 0.3
    dep = mask & (torch.rand(3, 9, generator=g) > 0.5)
    dist = torch.where(dep, torch.randint(1, 3, (3, 9), generator=g), 0)
    loss, m = train.loss_and_metrics(model, "lm", Batch(x, y, mask, dep_mask=dep, distance=dist))
    logits = model(x)[0]
    ref = F.cross_entropy(logits[mask], y[mask])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    hit = logits.argmax(-1) == y
    assert m["acc"] == pytest.approx(hit[mask].float().mean().item())
    assert m["dep_acc"] == pytest.approx(hit[dep].float().mean().item())
    for d, acc in m["dep_acc_by_distance"].items():
        assert acc == pytest.approx(hit[dep & (dist == d)].float().mean().item())
    assert m["bpc"] == pytest.approx(ref.item() / math.log(2), rel=1e-6)
    # the loss is differentiable
    loss.backward()
    assert model.decoder.weight.grad is not None


def test_classify_regress_seq2seq_losses():
    torch.manual_seed(0)
    clf = models.build("classifier", num_classes=3, vocab_size=5, hidden_size=4)
    x = torch.randint(0, 5, (6, 7))
    y = torch.randint(0, 3, (6,))
    loss, m = train.loss_and_metrics(clf, "classify", Batch(x, y))
    logits = clf(x)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert m["acc"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())

    reg = models.build("regressor", input_size=2, hidden_size=4)
    xf, yf = torch.randn(5, 6, 2), torch.randn(5)
    loss, m = train.loss_and_metrics(reg, "regress", Batch(xf, yf))
    pred = reg(xf)
    assert loss.item() == pytest.approx(((pred - yf) ** 2).mean().item(), rel=1e-6)
    assert m["mse"] == pytest.approx(loss.item(), rel=1e-6)
    assert m["acc"] == pytest.approx(((pred - yf).abs() < 0.04).float().mean().item())

    s2s = models.build("seq2seq", src_vocab=6, tgt_vocab=6, hidden_size=5)
    src = torch.randint(0, 6, (4, 5))
    y_in, y = torch.randint(0, 6, (4, 3)), torch.randint(0, 6, (4, 3))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    lengths = torch.tensor([5, 4, 3, 5])
    loss, m = train.loss_and_metrics(s2s, "seq2seq", Batch(src, y, mask, lengths, y_in=y_in))
    logits = s2s(src, lengths, y_in)
    assert loss.item() == pytest.approx(F.cross_entropy(logits[mask], y[mask]).item(), rel=1e-6)


class _FakeTask:
    """A duck-typed regression task; ``nan_at`` puts a NaN target into that (1-based) batch."""

    name, kind, vocab_size, input_size, num_outputs, tokenizer = "fake", "regress", None, 2, 1, None

    def __init__(self, nan_at=None):
        self.calls, self.nan_at = 0, nan_at

    def batch(self, split, batch_size, generator=None, seq_len=None):
        x = torch.randn(batch_size, 5, 2, generator=generator)
        y = x[:, :, 0].sum(1)
        if split == "train":
            self.calls += 1
            if self.calls == self.nan_at:
                y[0] = float("nan")
        return Batch(x, y)


def test_clipping_logs_the_pre_clip_norm_and_scales_the_gradient():
    torch.manual_seed(0)
    model = models.build("regressor", input_size=2, hidden_size=4)
    ref = copy.deepcopy(model)
    trainer = train.Trainer(model, _FakeTask(), steps=1, batch_size=8, optimizer="sgd", lr=0.5,
                            clip=1e-3, decay=None, seed=5)
    rec = trainer.train_step()
    # reference: same batch (same seed), autograd, global norm, manual SGD step
    batch = _FakeTask().batch("train", 8, torch.Generator().manual_seed(5))
    loss = ((ref(batch.x) - batch.y) ** 2).mean()
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    assert rec["grad_norm"] == pytest.approx(float(norm), rel=1e-5)
    assert float(norm) > 1e-3  # so clipping was active
    scale = 1e-3 / float(norm)
    for p, p0, g in zip(model.parameters(), ref.parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), p0.detach() - 0.5 * scale * g, rtol=1e-5,
                                   atol=1e-7)


def test_fit_stops_on_target_time_budget_and_callback():
    torch.manual_seed(0)
    model = models.build("regressor", input_size=2, hidden_size=4)
    h = train.fit(model, _FakeTask(), steps=50, batch_size=4, eval_every=3, eval_batches=1,
                  target=0.0, target_metric="acc")
    assert h.steps_to_target == 3 and h.stopped == "target" and len(h.records) == 3
    assert {"step", "loss", "grad_norm", "lr", "time", "val_loss", "val_acc", "val_mse"} \
        <= set(h.records[-1])
    h = train.fit(model, _FakeTask(), steps=50, batch_size=4, time_budget=1e-9, eval_batches=1)
    assert h.stopped == "time" and len(h.records) == 1 and "val_loss" in h.records[-1]
    h = train.fit(model, _FakeTask(), steps=50, batch_size=4, eval_batches=1,
                  callback=lambda r: r["step"] < 4)
    assert h.stopped == "callback" and len(h.records) == 4
    h = train.fit(model, _FakeTask(), steps=5, batch_size=4, eval_every=100, eval_batches=1)
    assert h.stopped == "steps" and [r["step"] for r in h.records] == [1, 2, 3, 4, 5]
    assert h.final and h.final["loss"] == h.records[-1]["val_loss"]


def test_non_finite_loss_stops_without_applying_the_update():
    torch.manual_seed(0)
    model = models.build("regressor", input_size=2, hidden_size=4)
    seen = []
    h = train.fit(model, _FakeTask(nan_at=3), steps=10, batch_size=4, eval_batches=1,
                  callback=lambda r: seen.append(copy.deepcopy(model.state_dict())))
    assert h.stopped == "non-finite" and h.nonfinite["step"] == 3
    assert len(h.records) == 2
    for k, v in model.state_dict().items():  # unchanged since step 2, and finite
        assert torch.equal(v, seen[-1][k]) and torch.isfinite(v).all()
    with pytest.raises(train.NonFiniteError):
        train.fit(model, _FakeTask(nan_at=1), steps=3, batch_size=4, on_nonfinite="raise")


# ---- exact resume ------------------------------------------------------------------------------

def _params(out):
    return checkpoint.load(Path(out) / "last.pt")["model"]


@pytest.mark.parametrize("tbptt,n", [("random", 3000), ("stateful", 900)])
def test_resume_20_plus_20_equals_40(tmp_path, tbptt, n):
    path = text_file(tmp_path, n)  # 900 chars: the stateful stream wraps around within 40 steps
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train_run(straight, tiny_config(path, steps=40, tbptt=tbptt), progress=False)
    train.train_run(split, tiny_config(path, steps=20, tbptt=tbptt), progress=False)
    r = train.train_run(split, resume=True, steps=40, progress=False)
    assert r.step == 40
    a, b = _params(straight), _params(split)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    ma, mb = metrics(straight), metrics(split)
    assert [m["step"] for m in mb] == list(range(1, 41))
    for x, y in zip(ma, mb, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-6)
        assert y.get("val_loss", 0) == pytest.approx(x.get("val_loss", 0), abs=1e-6)


def test_resume_after_a_crash_with_cosine_schedule(tmp_path, monkeypatch):
    """A run of 30 steps (warmup + cosine) that crashes at step 23 and is resumed from its
    checkpoint at step 21 ends exactly like the uninterrupted run."""
    path = text_file(tmp_path)
    cfg = dict(steps=30, warmup=5, decay="cosine", checkpoint_every=7)
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train.train_run(straight, tiny_config(path, **cfg), progress=False)

    real_step = train.Trainer.train_step

    def crashing_step(self):
        if self.step == 22:
            raise KeyboardInterrupt  # dies inside step 23
        return real_step(self)

    monkeypatch.setattr(train.Trainer, "train_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train.train_run(crashed, tiny_config(path, **cfg), progress=False)
    monkeypatch.setattr(train.Trainer, "train_step", real_step)
    assert checkpoint.load(crashed / "last.pt")["step"] == 21
    train.train_run(crashed, resume=True, progress=False)
    a, b = _params(straight), _params(crashed)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    assert [m["loss"] for m in metrics(crashed)] == pytest.approx(
        [m["loss"] for m in metrics(straight)], abs=1e-6)


def test_kill_9_leaves_a_loadable_checkpoint(tmp_path):
    path = text_file(tmp_path)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(train.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "train", "--text", str(path), "--hidden-size", "8",
         "--num-layers", "1", "--batch-size", "2", "--seq-len", "8", "--steps", "100000",
         "--checkpoint-every", "1", "--eval-every", "100000", "--quiet", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 60
        while not (out / "last.pt").exists() and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(0.3)  # let it write a few more checkpoints, then kill it mid-flight
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = checkpoint.load_run(out)
    assert run.step >= 1
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    # and the run resumes from it (clearing a temp file the kill may have left)
    r = train.train_run(out, resume=True, steps=run.step + 2, progress=False)
    assert r.step == run.step + 2
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


# ---- text: sampling and scoring ----------------------------------------------------------------

def test_greedy_sampling_matches_recomputing_the_whole_prefix():
    tok = CharTokenizer.from_text("abcdefg")
    model = tiny_lm(vocab=7).eval()
    text = train.sample(model, tok, "abc", length=12, temperature=0)
    ids = tok.encode("abc").tolist()
    with torch.no_grad():
        for _ in range(12):  # independent: no carried state, the full prefix every step
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
    assert text == tok.decode(ids[3:])
    g = torch.Generator().manual_seed(0)
    assert train.sample(model, tok, "abc", 12, temperature=1.0, top_k=1, generator=g) == text


def test_sampling_is_seeded_and_respects_top_k():
    tok = CharTokenizer.from_text("abcdefg")
    model = tiny_lm(vocab=7).eval()
    s1 = train.sample(model, tok, "a", 40, 1.5, None, torch.Generator().manual_seed(4))
    s2 = train.sample(model, tok, "a", 40, 1.5, None, torch.Generator().manual_seed(4))
    assert s1 == s2 and len(s1) == 40
    with torch.no_grad():
        first = model(tok.encode("a").view(1, -1))[0][0, -1]
    top2 = {tok.decode(torch.tensor([i])) for i in torch.topk(first, 2).indices.tolist()}
    for seed in range(10):
        s = train.sample(model, tok, "a", 1, 1.0, 2, torch.Generator().manual_seed(seed))
        assert s in top2


def test_evaluate_text_single_stream_equals_one_pass():
    text = shakespeare_text()[:400]
    tok = CharTokenizer.from_text(text)
    model = tiny_lm(vocab=tok.vocab_size).eval()
    m = train.evaluate_text(model, tok, text, seq_len=64, streams=1)
    ids = tok.encode(text)
    with torch.no_grad():
        logits = model(ids[:-1].view(1, -1))[0][0]
    nats = float(F.cross_entropy(logits, ids[1:]))
    assert m["tokens"] == len(text) - 1
    assert m["nats_per_char"] == pytest.approx(nats, rel=1e-5)
    assert m["bits_per_char"] == pytest.approx(nats / math.log(2), rel=1e-5)
    assert m["perplexity"] == pytest.approx(math.exp(nats), rel=1e-5)
    # several streams score every character too
    assert train.evaluate_text(model, tok, text, seq_len=16, streams=4)["tokens"] == len(text) - 1


def test_ctrl_c_finishes_the_step_saves_and_stops(tmp_path, monkeypatch):
    path = text_file(tmp_path)
    real_step = train.Trainer.train_step

    def step_then_ctrl_c(self):
        rec = real_step(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the handler, between bytecodes
        return rec

    monkeypatch.setattr(train.Trainer, "train_step", step_then_ctrl_c)
    r = train.train_run(tmp_path / "run", tiny_config(path, steps=40), progress=False)
    assert r.stopped == "interrupted" and r.step == 3
    assert checkpoint.load(tmp_path / "run" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_tensorboard_scalars_when_available(tmp_path, monkeypatch):
    written = []

    class Writer:
        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def close(self):
            written.append("closed")

    monkeypatch.setattr(train, "_tensorboard", lambda out, step: Writer())
    train.train_run(tmp_path / "run", tiny_config(text_file(tmp_path), steps=10), progress=False)
    tags = {t[0] for t in written[:-1]}
    assert {"loss", "grad_norm", "lr", "val/loss", "val/bpc"} <= tags and written[-1] == "closed"
    assert [v for t, v, s in written[:-1] if t == "loss"] == pytest.approx(
        [m["loss"] for m in metrics(tmp_path / "run")])
