"""rnnlab study: the quick profile end to end through the CLI, plus the measuring pieces against
independent references (torch.nn with copied weights, closed forms)."""

import json
import math
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from rnnlab import studies
from rnnlab.equations import unroll
from rnnlab.studies import gradflow, params
from rnnlab.studies.common import Claim, log10_close, pick

CLAIM_KEYS = {"id", "statement", "expected", "measured", "holds"}


def external_refs(html: str) -> list[str]:
    """Every src=/href=/url() value that is not a data: URI or an in-page anchor."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", html, flags=re.I)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "all"
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "study", "all", "--quick",
                           "--seed", "0", "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_quick_all_writes_every_study_and_the_report(quick_all):
    out, proc = quick_all
    assert "report:" in proc.stdout
    for name in studies.names():
        doc = json.loads((out / name / "results.json").read_text())
        assert doc["study"] == name and doc["profile"] == "quick" and doc["seed"] == 0
        assert isinstance(doc["config"], dict)
        assert doc["claims"], name
        for c in doc["claims"]:
            assert CLAIM_KEYS <= set(c), (name, c)
            assert c["holds"] in (True, False, None)
        for rel in doc["figures"]:
            assert (out / name / rel).is_file() and rel.startswith("figures/")
    html = (out / "report.html").read_text()
    assert external_refs(html) == []
    n_figs = sum(len(json.loads((out / n / "results.json").read_text())["figures"])
                 for n in studies.names())
    assert html.count("data:image/png;base64,") == n_figs
    n_claims = sum(len(json.loads((out / n / "results.json").read_text())["claims"])
                   for n in studies.names())
    assert html.count("<tr><td><a href=") == n_claims  # every claim in the summary table


def test_quick_gradflow_keys_and_values(quick_all):
    out, _ = quick_all
    doc = json.loads((out / "gradflow" / "results.json").read_text())
    lengths = doc["lengths"]
    assert max(lengths) >= 100  # the floor for the quick profile
    for name in ("rnn", "lstm", "gru", "attention"):
        m = doc["models"][name]
        assert len(m["ratio"]) == len(m["ratio_default_init"]) == len(lengths)
    # independent reference: the closed form 0.9^(T−1) of the linear regime (RNN, T = 5, 10)
    for T, r in zip(lengths, doc["models"]["rnn"]["ratio"], strict=True):
        if T <= 10:
            assert r == pytest.approx(0.9 ** (T - 1), rel=0.05)
    assert len(doc["per_position"]["rnn"]) == doc["per_position"]["T"]
    assert doc["path_length"][str(lengths[0])]["attention"] == 1


def test_quick_race_keys(quick_all):
    out, _ = quick_all
    doc = json.loads((out / "race" / "results.json").read_text())
    for name in ("rnn", "lstm", "gru", "attention"):
        row = doc["models"][name]
        assert {"steps_to_target", "final_val_acc", "final_dependency_acc", "wall_time_s",
                "params"} <= set(row)
    assert all(set(v) == {"rnn", "lstm", "gru", "attention"} for v in doc["by_distance"].values())
    # per-model lr: from the stated grid, the best on the selection split
    grid = doc["config"]["lr_grid"]
    for name in ("rnn", "lstm", "gru", "attention"):
        lr = doc["models"][name]["lr"]
        scores = doc["lr_selection"][name]
        assert lr in grid and set(scores) == {f"{v:g}" for v in grid}
        best = max((s["selection_dep_acc"] or 0.0) for s in scores.values())
        assert (scores[f"{lr:g}"]["selection_dep_acc"] or 0.0) == best


def test_unknown_study_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "study", "nosuch", "--out",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown study 'nosuch'")
    assert "Traceback" not in proc.stderr


def test_lstm_cell_path_is_forget_product():
    """Along the cell state alone, ∂L/∂c_1 = ∂L/∂c_T ⊙ ∏_{t=2}^T f_t (closed form)."""
    torch.manual_seed(1)
    model = gradflow.build("lstm", "theory", seed=1, max_len=12)
    x = torch.randn(2, 12, gradflow.H, dtype=torch.float64)
    (rec,) = unroll(model.core, x, block="h", retain_grad=True).steps  # the cell path alone
    rec.h[-1].sum().backward()
    f = torch.stack(rec.gates["f"][1:]).prod(0).detach()  # ∏_{t=2}^T f_t, (B, H)
    torch.testing.assert_close(rec.c[0].grad, rec.c[-1].grad * f)
    assert f.mean().item() == pytest.approx(0.9 ** 11, rel=0.05)  # forget gate ≈ 0.9


def test_rnn_theory_ratio_closed_form():
    model = gradflow.build("rnn", "theory", seed=0, max_len=20)
    prof = gradflow.grad_profile(model, gradflow._head(0), 20, 4, seed=0)
    assert prof[-1].item() == pytest.approx(1.0)
    assert prof[0].item() == pytest.approx(0.9 ** 19, rel=0.05)


def test_path_length_counts_cell_applications():
    model = gradflow.build("rnn", "theory", seed=0, max_len=9)
    assert gradflow.path_length(model, 9, seed=0) == 9
    assert gradflow.attention_hops(9, seed=0) == 1


def test_param_counts_against_torch_closed_form():
    for I, H in ((3, 5), (8, 4)):
        for name, ref in (("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)):
            assert params.closed_form(name, I, H) == sum(p.numel() for p in ref(I, H).parameters())


def test_helpers():
    assert log10_close(0.011, 0.01, 0.1) is True
    assert log10_close(0.1, 0.01, 0.5) is False
    assert log10_close(0.0, 0.01, 0.5) is None
    assert log10_close(math.nan, 0.01, 0.5) is None
    assert pick("full", quick=1, default=2) == 2
    with pytest.raises(ValueError):
        pick("slow", quick=1, default=2)
    c = Claim("a", "b", 1, 2, 0)  # falsy verdicts stay False, never None
    assert c.to_dict()["holds"] is False


def test_run_rejects_unknown_names(tmp_path):
    from rnnlab.errors import UserError

    with pytest.raises(UserError):
        studies.run("nosuch", out=tmp_path)
    with pytest.raises(UserError):
        studies.run("params", profile="huge", out=tmp_path)


def test_params_study_runs(tmp_path):
    doc = studies.run("params", profile="quick", seed=0, out=tmp_path)
    assert all(c["holds"] is True for c in doc["claims"])
    assert (tmp_path / "figures" / "param_counts.png").is_file()
