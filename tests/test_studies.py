"""rnnlab study: the quick profile end to end through the CLI (results.json as evidence, the
report), plus the measuring pieces against independent references (closed forms, torch.nn)."""

import json
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from rnnlab import studies
from rnnlab.equations import unroll
from rnnlab.studies import gradflow, params
from rnnlab.studies.claims import VERDICTS
from rnnlab.studies.common import pick, set_forget_bias

CLAIM_KEYS = {"id", "statement", "quote", "source", "criterion", "expected", "measured",
              "verdict", "why"}
RUN_KEYS = {"arm", "seed", "status", "init_fingerprint", "wall_s", "cpu_s"}


def external_refs(html: str) -> list[str]:
    """Every src=/href=/url() value that is not a data: URI or an in-page anchor."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", html, flags=re.I)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "all"
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "study", "all", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_quick_all_writes_evidence_for_every_study(quick_all):
    out, proc = quick_all
    assert "report:" in proc.stdout and "not meaningful" in proc.stdout
    session = json.loads((out / "session.json").read_text())
    assert session["profile"] == "quick" and session["failed_runs"] == 0
    assert session["environment"]["cores"] >= 1 and session["environment"]["torch"]
    for name in studies.names():
        doc = json.loads((out / name / "results.json").read_text())
        assert doc["study"] == name and doc["profile"] == "quick" and doc["seeds"]
        assert {"title", "quote", "source"} <= set(doc["intro"])
        assert doc["claims"], name
        for c in doc["claims"]:
            assert CLAIM_KEYS <= set(c), (name, c)
            assert {"mean", "interval", "per_seed"} <= set(c["measured"])
            assert {"lesson", "section"} <= set(c["source"]) and c["criterion"]["text"]
            assert c["verdict"] in VERDICTS
            assert c["verdict"] == "holds" or c["why"], (name, c["id"])  # a reason, always
        assert doc["runs"] and all(RUN_KEYS <= set(r) and r["status"] == "ok"
                                   for r in doc["runs"])
        for f in doc["figures"]:
            assert (out / name / f["path"]).is_file() and f["caption"]
    html = (out / "report.html").read_text()
    assert external_refs(html) == []
    n_figs = sum(len(json.loads((out / n / "results.json").read_text())["figures"])
                 for n in studies.names())
    assert html.count("data:image/png;base64,") == n_figs
    n_claims = sum(len(json.loads((out / n / "results.json").read_text())["claims"])
                   for n in studies.names())
    assert html.count('<tr><td><a href="#study-') == n_claims  # every claim in the summary
    assert "verdicts are not meaningful" in html                # the quick warning
    assert '"claims"' not in html.split("<details>")[0]        # no raw JSON in the page


def test_quick_gradflow_values(quick_all):
    out, _ = quick_all
    doc = json.loads((out / "gradflow" / "results.json").read_text())
    runs = {(r["arm"], r["seed"]): r for r in doc["runs"]}
    rnn = runs[("rnn-theory", 0)]
    assert max(rnn["lengths"]) >= 100
    # independent reference: the closed form 0.9^(T−1) of the linear regime (RNN, T = 5, 10)
    for T, r in zip(rnn["lengths"], rnn["first_last"], strict=True):
        if T <= 10:
            assert r == pytest.approx(0.9 ** (T - 1), rel=0.05)
    assert rnn["path_length"] == rnn["lengths"]
    assert all(h == 1 for h in runs[("attention-1l", 0)]["path_length"])
    # theory and default arms of one cell start from the same draw
    assert runs[("lstm-theory", 0)]["init_fingerprint"] == runs[("lstm-default", 0)][
        "init_fingerprint"]


def test_quick_race_reports_tense_and_agreement(quick_all):
    out, _ = quick_all
    doc = json.loads((out / "race" / "results.json").read_text())
    for r in doc["runs"]:
        assert {"final_tense", "final_agreement", "steps_to_target", "cpu_to_target_s",
                "by_distance", "params"} <= set(r)
    runs = {(r["arm"], r["seed"]): r for r in doc["runs"]}
    assert runs[("lstm", 0)]["init_fingerprint"] == runs[("lstm-fb3", 0)]["init_fingerprint"]
    ids = {c["id"] for c in doc["claims"]}
    assert {"lstm_reaches_90_tense", "lstm_reaches_90_agreement", "attention_less_time"} <= ids


def test_study_errors_are_one_line(tmp_path):
    for args, msg in ((["nosuch"], "error: unknown study 'nosuch'"),
                      (["params", "--quick", "--full"], "error: --quick and --full exclude"),
                      (["params", "--quick", "--profile", "full"],
                       "error: --quick and --profile full exclude"),
                      (["params", "--address", "auto"], "error: --address joins a Ray cluster")):
        proc = subprocess.run([sys.executable, "-m", "rnnlab", "study", *args, "--out",
                               str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip().startswith(msg) and len(proc.stderr.strip().splitlines()) == 1


def test_lstm_cell_path_is_forget_product():
    """Along the cell state alone, ∂L/∂c_1 = ∂L/∂c_T ⊙ ∏_{t=2}^T f_t (closed form)."""
    model, _ = gradflow.build("lstm", "theory", seed=1, max_len=12)
    x = torch.randn(2, 12, gradflow.H, dtype=torch.float64)
    (rec,) = unroll(model.core, x, block="h", retain_grad=True).steps  # the cell path alone
    rec.h[-1].sum().backward()
    f = torch.stack(rec.gates["f"][1:]).prod(0).detach()  # ∏_{t=2}^T f_t, (B, H)
    torch.testing.assert_close(rec.c[0].grad, rec.c[-1].grad * f)
    assert f.mean().item() == pytest.approx(0.9 ** 11, rel=0.05)  # forget gate ≈ 0.9


def test_rnn_theory_ratio_closed_form():
    model, _ = gradflow.build("rnn", "theory", seed=0, max_len=20)
    norms = gradflow.input_grads(model, gradflow._head(0), 20, 4, seed=0)
    assert gradflow.ratios(norms)["first_last"] == pytest.approx(0.9 ** 19, rel=0.05)


def test_attention_fair_ratio_against_the_median():
    norms = torch.tensor([[1.0, 2.0, 4.0, 3.0, 10.0]])   # median of positions 2..T−1 is 3
    r = gradflow.ratios(norms)
    assert r["first_last"] == pytest.approx(0.1) and r["first_median"] == pytest.approx(1 / 3)


def test_path_length_counts_cell_applications():
    model, _ = gradflow.build("rnn", "theory", seed=0, max_len=9)
    assert gradflow.path_length(model, 9, seed=0) == 9
    att, _ = gradflow.build("attention", "theory", seed=0, max_len=9)
    assert gradflow.attention_hops(att, 9, seed=0) == 1


def test_set_forget_bias_matches_the_layer_option():
    from rnnlab import LSTM

    torch.manual_seed(3)
    a = LSTM(4, 5, num_layers=2, forget_bias=1.5)
    torch.manual_seed(3)
    b = set_forget_bias(LSTM(4, 5, num_layers=2), 1.5)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=n)


def test_param_counts_against_torch_closed_form():
    for I, H in ((3, 5), (8, 4)):
        for name, ref in (("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)):
            assert params.closed_form(name, I, H) == sum(p.numel() for p in ref(I, H).parameters())


def test_pick_and_unknown_names(tmp_path):
    from rnnlab.errors import UserError

    assert pick("full", quick=1, default=2) == 2
    with pytest.raises(ValueError):
        pick("slow", quick=1, default=2)
    with pytest.raises(UserError):
        studies.run("nosuch", out=tmp_path)
    with pytest.raises(UserError):
        studies.run("params", profile="huge", out=tmp_path)
    with pytest.raises(UserError):
        studies.run("params", seeds=0, out=tmp_path)


def test_params_study_runs(tmp_path):
    doc = studies.run("params", profile="quick", out=tmp_path, workers=1)
    assert all(c["verdict"] == "holds" for c in doc["claims"])
    assert (tmp_path / "figures" / "param_counts.png").is_file()


# -- the scan recurrences' rows (issue 18, item 5) --------------------------------------------
def _spec(study, arm, settings, seed=0, profile="quick"):
    from rnnlab.studies.executor import RunSpec

    return RunSpec(study, arm, seed, profile, settings, 1.0)


@pytest.mark.parametrize("arm", ["lru-theory", "mingru-theory", "minlstm-theory"])
def test_scan_closed_forms_match(arm):
    """Constant diagonal coefficient of modulus 0.9: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = 0.9^(T−1)."""
    model, setting = gradflow.ARMS[arm]
    r = gradflow.run_one(_spec("gradflow", arm, {"model": model, "setting": setting,
                                                 "lengths": [5, 20, 60], "B": 4}))
    assert r["max_rel_err"] < 1e-6
    for T, v in zip(r["lengths"], r["state_first_last"], strict=True):
        assert v == pytest.approx(0.9 ** (T - 1), rel=1e-5)  # stored to 6 significant digits
    if arm == "lru-theory":
        assert r["lambda_abs"] == pytest.approx([0.9, 0.9], rel=1e-9)


def test_lru_ring_keeps_gradient_and_shares_the_draw():
    kw = {"lengths": [5, 50], "B": 4}
    ring = gradflow.run_one(_spec("gradflow", "lru-ring", {"model": "lru", "setting": "ring",
                                                           **kw}))
    lo, hi = ring["lambda_abs"]
    assert 0.9 <= lo <= hi <= 0.999
    assert ring["state_first_last"][-1] > 0.999 ** 49 * 1e-3  # far from 0.5^49
    a = gradflow.run_one(_spec("gradflow", "mingru-theory", {"model": "mingru",
                                                             "setting": "theory", **kw}))
    b = gradflow.run_one(_spec("gradflow", "mingru-default", {"model": "mingru",
                                                              "setting": "default", **kw}))
    assert a["init_fingerprint"] == b["init_fingerprint"]  # paired: the same draw


def _runs(arm_values: dict):
    from rnnlab.studies.common import Runs

    return Runs([{"arm": a, "seed": s, "status": "ok", **r} for a, per in arm_values.items()
                 for s, r in enumerate(per)])


def _adding(steps, solved):
    return {"steps_to_solve": solved, "final": 0.01 if solved else 0.16,
            "curve": {"step": list(range(100, steps + 1, 100)), "val": []}}


@pytest.mark.parametrize("model_steps, lstm_steps, verdict", [
    ([300, 400, 500], (600, 700, 800), "holds"),
    ([900, 1000, 950], (600, 700, 800), "does not hold"),
    ([300, None, 500], (600, 700, 800), "inconclusive"),
    # censored: the model unsolved where the LSTM solved is a lower bound, > 0 -> decided
    ([None, None, None], (600, 700, 800), "does not hold"),
    # the LSTM unsolved where the model solved is an upper bound, < 0 -> decided
    ([300, 400, 500], (None, None, None), "holds"),
    # both unsolved on a seed: no bound at all
    ([300, None, 500], (600, None, 800), "inconclusive"),
])
def test_adding_fewer_steps_three_verdicts(model_steps, lstm_steps, verdict):
    from rnnlab.studies.long_range_scan import scan_claims

    runs = _runs({"adding-T100-lstm": [_adding(1000, x) for x in lstm_steps],
                  "adding-T100-mingru": [_adding(1000, x) for x in model_steps]})
    (c,) = scan_claims(runs, [0, 1, 2])
    assert c.id == "mingru_adding_fewer_steps" and c.verdict == verdict
    assert verdict == "holds" or c.why


@pytest.mark.parametrize("model_steps, lstm_steps", [
    ([None] + [100] * 5, [1000] + [900] * 5),  # interval < 0, but seed 0 is a lower bound
    ([950] + [900] * 5, [None] + [100] * 5),   # interval > 0, but seed 0 is an upper bound
])
def test_adding_fewer_steps_a_bound_never_supports_the_verdict_it_leans_to(model_steps,
                                                                           lstm_steps):
    from rnnlab.studies.long_range_scan import scan_claims

    runs = _runs({"adding-T100-lstm": [_adding(1000, x) for x in lstm_steps],
                  "adding-T100-mingru": [_adding(1000, x) for x in model_steps]})
    (c,) = scan_claims(runs, list(range(6)))
    lo, hi = c.measured["interval"]
    assert hi < 0 or lo > 0  # the interval alone would decide
    assert c.verdict == "inconclusive" and "bound" in c.why


@pytest.mark.parametrize("ratios, verdict", [((1.0, 1.05, 0.95), "holds"),
                                             ((3.0, 3.3, 2.8), "does not hold"),
                                             ((0.5, 1.4, 3.0), "inconclusive")])
def test_scan_per_token_three_verdicts(ratios, verdict):
    from rnnlab.studies.parallelism_claims import scan_part

    def run(g):
        return {"scan_lengths": [128, 4096], "scan_width": 8, "scan_batch": 2,
                "per_token_us": {k: [1.0, g] for k in ("scan", "loop", "attention")},
                "scan_s": {k: [1e-3, 2e-3] for k in ("scan", "loop", "attention")},
                "flops_per_token": {k: [1.0, 1.0] for k in ("scan", "loop", "attention")}}

    claims, figures, tables, _ = scan_part(_runs({"scan": [run(g) for g in ratios]}), [0, 1, 2])
    assert claims[0].id == "scan_per_token_flat" and claims[0].verdict == verdict
    assert figures and tables


def test_scan_flops_closed_form():
    from rnnlab.studies.parallelism_scan import flops_per_token

    d, T = 64, 1024
    assert flops_per_token("loop", d, T) == 3 * 2 * 2 * d * d + 2 * 2 * d
    assert flops_per_token("attention", d, 2 * T) - flops_per_token("attention", d, T) \
        == 3 * 4 * T * d  # the T-dependent part: QKᵀ and AV, 2·2·T·d per query


def test_quick_new_rows(quick_all):
    out, _ = quick_all
    ids = lambda name: {c["id"]: c for c in json.loads(
        (out / name / "results.json").read_text())["claims"]}
    gf = ids("gradflow")
    for cid in ("lru_closed_form", "mingru_closed_form", "minlstm_closed_form",
                "lru_ring_no_vanish", "lru_ring_vs_rnn"):
        assert gf[cid]["verdict"] in VERDICTS
    assert gf["lru_closed_form"]["verdict"] == "holds"  # deterministic: no budget involved
    assert {"mingru_adding_fewer_steps", "lru_adding_fewer_steps"} <= set(ids("long-range"))
    assert "scan_per_token_flat" in ids("parallelism")
    race = json.loads((out / "race" / "results.json").read_text())
    assert {"mingru", "lru"} <= {r["arm"] for r in race["runs"]}
    fb = json.loads((out / "forget-bias" / "results.json").read_text())
    assert "figures/telemetry_heatmaps.png" in {f["path"] for f in fb["figures"]}
    traced = [r for r in fb["runs"] if r.get("telemetry")]
    assert {r["arm"] for r in traced} == {"bias-0", "bias-1", "rnn-telemetry"}


def test_curves_never_draw_two_series_alike():
    """Series whose names map to one colour (minGRU scan and minGRU loop) are told apart."""
    import matplotlib

    matplotlib.use("Agg")
    from rnnlab import plots

    series = {name: {"x": [1, 2], "y": [1.0, 2.0]}
              for name in ("minGRU, parallel scan", "minGRU, sequential loop", "minGRU, third")}
    fig = plots.plot_curves(series, title="", xlabel="", ylabel="")
    looks = {(str(line.get_color()), str(line.get_linestyle())) for line in fig.axes[0].lines}
    assert len(looks) == 3


@pytest.mark.parametrize("op, verdict, bounds, stands", [
    # "x < 0 holds" says x is small: a lower bound cannot back it, an upper bound can
    ("<", "holds", {"lower": [1]}, False),
    ("<", "holds", {"upper": [1]}, True),
    ("<", "does not hold", {"lower": [1]}, True),
    ("<", "does not hold", {"upper": [1]}, False),
    # "x > 0 holds" says x is large: the reverse
    (">", "holds", {"lower": [1]}, True),
    (">", "holds", {"upper": [1]}, False),
    (">", "does not hold", {"lower": [1]}, False),
    (">", "does not hold", {"upper": [1]}, True),
    (">", "holds", {"unknown": [2]}, False),  # both sides unfinished: not even a bound
    (">", "inconclusive", {"lower": [1]}, True),  # nothing to overturn
    (">", "holds", {}, True),
])
def test_a_bound_backs_only_the_verdict_on_its_side(op, verdict, bounds, stands):
    from rnnlab.studies.claims import Criterion, censored

    why = censored(Criterion(op, value=0.0), verdict, budget="1000 steps", **bounds)
    assert (why is None) == stands
    assert stands or ("bound" in why and "1000 steps" in why)
