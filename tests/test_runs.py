"""Run directories: exact resume (20 + 20 == 40), kill -9 safety, Ctrl-C, TensorBoard."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlab import checkpoint, journal, rundir, runs, train
from rnnlab.data import shakespeare_text


def text_file(tmp_path, n=3000, name="small.txt"):
    p = tmp_path / name
    p.write_text(shakespeare_text()[:n], encoding="utf-8")
    return p


def tiny_config(path, steps=40, seq_len=12, **train_options):
    opts = dict(steps=steps, batch_size=4, eval_every=10, eval_batches=2,
                checkpoint_every=10, seed=3, lr=1e-2, decay="none")
    opts.update(train_options)
    return runs.new_config("text", {"path": str(path), "seq_len": seq_len},
                           {"backbone": "lstm", "hidden_size": 10, "num_layers": 1,
                            "dropout": 0.2}, **opts)


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def crash_inside_step(monkeypatch, step: int, train_run) -> None:
    """Run ``train_run()`` with a process that dies (KeyboardInterrupt) inside step ``step``."""
    real_step = train.Trainer.train_step

    def crashing_step(self):
        if self.step == step - 1:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(train.Trainer, "train_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train_run()
    monkeypatch.setattr(train.Trainer, "train_step", real_step)


# ---- exact resume ------------------------------------------------------------------------------

def _params(out):
    return checkpoint.load(Path(out) / "last.pt")["model"]


@pytest.mark.parametrize("tbptt,n", [("random", 3000), ("stateful", 900)])
def test_resume_20_plus_20_equals_40(tmp_path, tbptt, n):
    path = text_file(tmp_path, n)  # 900 chars: the stateful stream wraps around within 40 steps
    straight, split = tmp_path / "straight", tmp_path / "split"
    runs.train_run(straight, tiny_config(path, steps=40, tbptt=tbptt), progress=False)
    runs.train_run(split, tiny_config(path, steps=20, tbptt=tbptt), progress=False)
    r = runs.train_run(split, resume=True, steps=40, progress=False)
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
    runs.train_run(straight, tiny_config(path, **cfg), progress=False)

    crash_inside_step(monkeypatch, 23, lambda: runs.train_run(
        crashed, tiny_config(path, **cfg), progress=False))
    assert checkpoint.load(crashed / "last.pt")["step"] == 21
    runs.train_run(crashed, resume=True, progress=False)
    a, b = _params(straight), _params(crashed)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    assert [m["loss"] for m in metrics(crashed)] == pytest.approx(
        [m["loss"] for m in metrics(straight)], abs=1e-6)


def test_traced_run_writes_telemetry_that_resumes_exactly(tmp_path, monkeypatch):
    """trace_every=1: a line per step; 20 + 20 steps, and a run killed at step 23 and resumed
    from its step-20 checkpoint (the lines of steps 21, 22 dropped and written again), give the
    40 lines of the run that never stopped."""
    path = text_file(tmp_path)
    straight, split, crashed = tmp_path / "straight", tmp_path / "split", tmp_path / "crashed"
    runs.train_run(straight, tiny_config(path, steps=40, trace_every=1), progress=False)
    runs.train_run(split, tiny_config(path, steps=20, trace_every=1), progress=False)
    runs.train_run(split, resume=True, steps=40, progress=False)

    crash_inside_step(monkeypatch, 23, lambda: runs.train_run(
        crashed, tiny_config(path, steps=40, trace_every=1), progress=False))
    assert [r["step"] for r in journal.read(crashed / journal.TELEMETRY)] == list(range(1, 23))
    runs.train_run(crashed, resume=True, progress=False)

    want = journal.read(straight / journal.TELEMETRY)
    assert [r["step"] for r in want] == list(range(1, 41))
    layer = want[0]["layers"]["backbone"]
    assert len(layer["grad_h"]) == 1 and len(layer["grad_h"][0]) == 12  # 1 layer, T = 12
    assert set(layer["gates"]) == set("ifgo") and layer["grad_c"] is not None
    for other in (split, crashed):
        got = journal.read(other / journal.TELEMETRY)
        assert len(got) == 40
        for a, b in zip(want, got, strict=True):
            assert a["step"] == b["step"]
            for name, la in a["layers"].items():
                lb = b["layers"][name]
                close = lambda x, y: torch.testing.assert_close(
                    torch.tensor(x), torch.tensor(y), rtol=1e-5, atol=1e-9)
                for f in ("grad_h", "grad_c"):
                    close(lb[f], la[f])
                for g, stats in la["gates"].items():
                    for stat, v in stats.items():
                        close(lb["gates"][g][stat], v)


def test_kill_9_leaves_a_loadable_checkpoint(tmp_path):
    path = text_file(tmp_path)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(runs.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
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
    run = runs.load_run(out)
    assert run.step >= 1
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    # and the run resumes from it (clearing a temp file the kill may have left)
    r = runs.train_run(out, resume=True, steps=run.step + 2, progress=False)
    assert r.step == run.step + 2
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_ctrl_c_finishes_the_step_saves_and_stops(tmp_path, monkeypatch):
    path = text_file(tmp_path)
    real_step = train.Trainer.train_step

    def step_then_ctrl_c(self):
        rec = real_step(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the handler, between bytecodes
        return rec

    monkeypatch.setattr(train.Trainer, "train_step", step_then_ctrl_c)
    r = runs.train_run(tmp_path / "run", tiny_config(path, steps=40), progress=False)
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

    monkeypatch.setattr(rundir, "tensorboard", lambda out, step: rundir.TensorBoard(Writer()))
    runs.train_run(tmp_path / "run", tiny_config(text_file(tmp_path), steps=10, trace_every=5),
                   progress=False)
    tags = {t[0] for t in written[:-1]}
    assert {"loss", "grad_norm", "lr", "val/loss", "val/bpc"} <= tags and written[-1] == "closed"
    tele = journal.read(tmp_path / "run" / journal.TELEMETRY)
    first = [(v, s) for t, v, s in written[:-1] if t == "telemetry/backbone/grad_h_first"]
    assert [s for _, s in first] == [1, 5, 10]
    assert [v for v, _ in first] == pytest.approx(
        [r["layers"]["backbone"]["grad_h"][0][0] for r in tele], rel=1e-5)
    assert "telemetry/backbone/f_mean" in tags and "telemetry/backbone/grad_c_last" in tags
    assert [v for t, v, s in written[:-1] if t == "loss"] == pytest.approx(
        [m["loss"] for m in metrics(tmp_path / "run")])
