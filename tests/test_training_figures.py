"""Telemetry while training from the command line, and its pictures: ``rnnlab train
--trace-every``, ``rnnlab inspect`` writing the figures a run has, and ``rnnlab.plots`` drawing
them from the records (the drawn values checked against numpy on the records themselves)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlab import journal, plots
from rnnlab.cli import main
from rnnlab.data import shakespeare_text

TINY = ["--hidden-size", "8", "--num-layers", "2", "--batch-size", "4", "--seq-len", "10",
        "--eval-every", "3", "--checkpoint-every", "3", "--quiet", "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("traced")
    text = d / "small.txt"
    text.write_text(shakespeare_text()[:3000], encoding="utf-8")
    out = d / "run"
    r = run("train", "--text", text, *TINY, "--steps", 6, "--trace-every", 3, "--out", out)
    assert r.exit_code == 0, r.output
    r = run("train", "--resume", out, "--steps", 8, "--trace-every", 4, "--quiet")
    assert r.exit_code == 0, r.output
    return out


def test_cli_trace_every_writes_a_line_per_traced_step(traced_run):
    tele = journal.read(traced_run / journal.TELEMETRY)
    assert [r["step"] for r in tele] == [1, 3, 6, 8]  # --trace-every changed on resume
    layer = tele[0]["layers"]["backbone"]
    assert np.array(layer["grad_h"]).shape == (2, 10)  # 2 layers, T = 10
    assert np.array(layer["gates"]["f"]["mean"]).shape == (2, 10)
    assert all(0 < v < 1 for v in layer["gates"]["f"]["mean"][0])


def test_inspect_writes_the_training_figures(traced_run):
    r = run("inspect", traced_run, "--seq-len", "10", "--batch-size", "1")
    assert r.exit_code == 0, r.output
    names = {p.name for p in (traced_run / "figures").iterdir()}
    assert {"learning_curves.png", "telemetry_grad_h.png", "telemetry_grad_c.png",
            "telemetry_gates.png"} <= names


def _records(rows=2, T=6, steps=(1, 10, 20), gates="ifgo", directions=1, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in steps:
        g = {name: {"mean": rng.uniform(0.1, 0.9, (rows, T)).tolist(),
                    "saturated": rng.uniform(0, 0.2, (rows, T)).tolist()} for name in gates}
        out.append({"step": s, "layers": {"rnn": {
            "grad_h": (10.0 ** rng.uniform(-6, 0, (rows, T))).tolist(),
            "grad_c": (10.0 ** rng.uniform(-6, 0, (rows, T))).tolist() if "f" in gates else None,
            "gates": g, "directions": directions}}})
    return out


def test_heatmap_draws_log10_of_the_records_over_training_and_time_steps():
    tele = _records(rows=2, directions=2)
    fig = plots.plot_telemetry_heatmap(tele)
    axes = [ax for ax in fig.axes if ax.get_xlabel() == "time step t"]
    assert [ax.get_title() for ax in axes] == ["rnn l0", "rnn l0 reverse"]
    for k, ax in enumerate(axes):
        want = np.log10(np.array([r["layers"]["rnn"]["grad_h"][k] for r in tele]))
        mesh = ax.collections[0]
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(want.shape), want)
        assert ax.get_ylabel() == "training step"
        assert all(float(t).is_integer() for t in ax.get_xticks())
        assert mesh.get_clim() == axes[0].collections[0].get_clim()  # one colour scale
    cbar = [ax for ax in fig.axes if "log₁₀" in ax.get_ylabel()]
    assert len(cbar) == 1


def test_side_by_side_puts_two_runs_on_one_colour_scale():
    lstm, rnn = _records(seed=1), _records(gates="h", seed=2, steps=(1, 5, 10, 15))
    fig = plots.plot_telemetry_side_by_side({"lstm": lstm, "rnn": rnn})
    axes = [ax for ax in fig.axes if ax.get_xlabel() == "time step t"]
    assert [ax.get_title() for ax in axes] == ["lstm", "rnn"]
    both = np.log10(np.concatenate([np.array([r["layers"]["rnn"]["grad_h"][0] for r in t])
                                    for t in (lstm, rnn)]))
    assert axes[0].collections[0].get_clim() == axes[1].collections[0].get_clim() == \
        pytest.approx((both.min(), both.max()))


def test_gate_history_is_the_mean_over_time_steps_and_none_without_gates():
    tele = _records()
    fig = plots.plot_gate_history(tele)
    ax = fig.axes[0]
    line = [ln for ln in ax.get_lines() if ln.get_label() == "mean f"][0]
    np.testing.assert_allclose(line.get_xdata(), [1, 10, 20])
    np.testing.assert_allclose(line.get_ydata(), [np.mean(r["layers"]["rnn"]["gates"]["f"]
                                                          ["mean"][0]) for r in tele])
    assert plots.plot_gate_history(_records(gates="h")) is None


def test_learning_curves_show_loss_metric_and_gradient_norm():
    metrics = [{"step": s, "loss": 3 - s / 10, "acc": s / 20, "grad_norm": 1.0 + s}
               for s in range(1, 21)]
    for r in metrics[4::5]:
        r.update(val_loss=r["loss"] + 0.1, val_acc=r["acc"] - 0.01)
    fig = plots.plot_learning_curves(metrics)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "gradient norm (before clipping)"]
    val = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "validation"][0]
    np.testing.assert_allclose(val.get_xdata(), [5, 10, 15, 20])
    lm = [dict(r, val_bpc=r["val_loss"] / math.log(2)) if "val_loss" in r else r
          for r in metrics]
    assert plots.plot_learning_curves(lm).axes[1].get_title() == "bits per character"
