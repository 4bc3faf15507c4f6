"""The training loop: losses against torch references, clipping, schedule, stopping rules,
exact resume (20 + 20 == 40), kill -9 safety, sampling and text scoring."""

import copy

import pytest
import torch

from rnnlab import models, train
from rnnlab.data import Batch
from rnnlab.errors import UserError


def tiny_lm(vocab=7, hidden=6, dropout=0.0):
    torch.manual_seed(0)
    return models.build("lm", vocab_size=vocab, backbone="lstm", hidden_size=hidden,
                        num_layers=1, dropout=dropout)


# ---- schedule, losses and metrics against independent references --------------------------

def test_lr_schedule_closed_form():
    assert train.lr_at(0, 1.0, warmup=4, decay=None) == pytest.approx(0.25)
    assert train.lr_at(3, 1.0, warmup=4, decay=None) == pytest.approx(1.0)
    assert train.lr_at(50, 1.0, warmup=0, decay="none", total=100) == 1.0
    # cosine: m + (1-m)·½(1+cos(πp)), m = 0.1
    assert train.lr_at(10, 2.0, warmup=10, decay="cosine", total=110) == pytest.approx(2.0)
    assert train.lr_at(60, 2.0, warmup=10, decay="cosine", total=110) == pytest.approx(1.1)
    assert train.lr_at(110, 2.0, warmup=10, decay="cosine", total=110) == pytest.approx(0.2)


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
    trainer = train.Trainer(model, _FakeTask(), train.TrainConfig(
        steps=1, batch_size=8, optimizer="sgd", lr=0.5, clip=1e-3, decay="none", seed=5))
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


class _Stop:
    """A callback around a function of the step record (False stops)."""

    def __init__(self, fn):
        self.fn = fn

    def on_step(self, trainer, rec, last):
        return self.fn(rec)


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
                  callbacks=[_Stop(lambda rec: rec["step"] < 4)])
    assert h.stopped == "callback" and len(h.records) == 4
    h = train.fit(model, _FakeTask(), steps=5, batch_size=4, eval_every=100, eval_batches=1)
    assert h.stopped == "steps" and [r["step"] for r in h.records] == [1, 2, 3, 4, 5]
    assert h.final and h.final["loss"] == h.records[-1]["val_loss"]


def test_non_finite_loss_stops_without_applying_the_update():
    torch.manual_seed(0)
    model = models.build("regressor", input_size=2, hidden_size=4)
    seen = []
    h = train.fit(model, _FakeTask(nan_at=3), steps=10, batch_size=4, eval_batches=1,
                  callbacks=[_Stop(lambda r: seen.append(copy.deepcopy(model.state_dict())))])
    assert h.stopped == "non-finite" and h.nonfinite["step"] == 3
    assert len(h.records) == 2
    for k, v in model.state_dict().items():  # unchanged since step 2, and finite
        assert torch.equal(v, seen[-1][k]) and torch.isfinite(v).all()
    with pytest.raises(train.NonFiniteError):
        train.fit(model, _FakeTask(nan_at=1), steps=3, batch_size=4, on_nonfinite="raise")




def test_fit_builds_after_seeding_so_the_same_seed_gives_the_same_initial_weights():
    def build():
        return models.build("regressor", input_size=2, hidden_size=4)

    first = []

    class Grab:
        def on_start(self, trainer):
            first.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    a = train.fit(build, _FakeTask(), steps=1, eval_batches=1, seed=7, callbacks=[Grab()])
    torch.randn(1000)  # other random work in between ...
    models.build("lm", vocab_size=50)  # ... including building other models
    b = train.fit(build, _FakeTask(), steps=1, eval_batches=1, seed=7, callbacks=[Grab()])
    c = train.fit(build, _FakeTask(), steps=1, eval_batches=1, seed=8, callbacks=[Grab()])
    assert a.init_fingerprint == b.init_fingerprint != c.init_fingerprint
    for k in first[0]:
        assert torch.equal(first[0][k], first[1][k])
    assert not all(torch.equal(first[0][k], first[2][k]) for k in first[0])
    assert isinstance(a.model, torch.nn.Module) and a.model is not b.model


def test_train_config_is_the_one_source_of_defaults(monkeypatch):
    """``rnnlab train`` with no options trains with TrainConfig's defaults, as fit does."""
    from rnnlab import cli, runs

    seen = {}

    def fake_train_run(out, config, **kw):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(runs, "train_run", fake_train_run)
    with pytest.raises(SystemExit):
        cli.main(["train"])
    assert seen["config"]["train"] == train.TrainConfig().to_dict()
    trainer = train.Trainer(models.build("regressor", input_size=2), _FakeTask())
    assert trainer.config == train.TrainConfig()


@pytest.mark.parametrize("bad", [dict(lr=float("nan")), dict(lr=0), dict(clip=float("inf")),
                                 dict(weight_decay=-1.0), dict(steps=-1), dict(seed=2**70),
                                 dict(decay="linear"), dict(time_budget=float("nan")),
                                 dict(target_metric="nope"), dict(batch_size=0)])
def test_train_config_refuses_bad_values_naming_the_option(bad):
    with pytest.raises(UserError, match=next(iter(bad))):
        train.TrainConfig(**bad).check()


# ---- telemetry while training ------------------------------------------------------------------

def test_trace_every_records_what_a_trace_around_the_step_records():
    """fit(trace_every=2) against rnnlab.trace wrapped by hand around the same steps of the same
    run (same seed, same batches): steps 1, 2, 4 are traced, and the records hold the trace's
    numbers."""
    import rnnlab
    from rnnlab.seeding import seed_everything

    def build():
        return models.build("regressor", input_size=2, hidden_size=4, backbone="gru",
                            num_layers=2)

    cfg = train.TrainConfig(steps=5, batch_size=4, eval_every=100, eval_batches=1, seed=2)
    h = train.fit(build, _FakeTask(), cfg, trace_every=2)
    assert [r["step"] for r in h.telemetry] == [1, 2, 4]

    seed_everything(cfg.seed)
    trainer = train.Trainer(build(), _FakeTask(), cfg)
    records = iter(h.telemetry)
    for step in range(1, 6):
        if step not in (1, 2, 4):
            trainer.train_step()
            continue
        with rnnlab.trace(trainer.model) as tr:
            trainer.train_step()
        rec = next(records)["layers"]["backbone"]
        assert rec["grad_c"] is None and rec["directions"] == 1
        torch.testing.assert_close(rec["grad_h"], tr["backbone"].grad_h, rtol=0, atol=1e-7)
        assert rec["grad_h"].shape == (2, 5)
        for g in "rzn":
            for stat in ("mean", "saturated"):
                torch.testing.assert_close(rec["gates"][g][stat], tr["backbone"].gates[g][stat],
                                           rtol=0, atol=1e-7)
    for p, q in zip(trainer.model.parameters(), h.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)  # tracing did not change the run


def test_trace_every_needs_a_recurrent_layer():
    model = models.build("regressor", input_size=2, hidden_size=4, backbone="attention",
                         num_heads=1)
    with pytest.raises(UserError, match="trace_every needs a model with a recurrent layer"):
        train.fit(model, _FakeTask(), steps=2, trace_every=1, eval_batches=1)
    with pytest.raises(UserError, match="trace_every"):
        train.TrainConfig(trace_every=-1).check()
