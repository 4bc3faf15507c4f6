"""report.write_report: one self-contained page that reads as evidence; verdicts as measured."""

import json
import re
from types import SimpleNamespace

import pytest
from matplotlib.figure import Figure

from rnnlab import report
from rnnlab.errors import UserError
from rnnlab.studies import claims as cl
from rnnlab.studies.common import Runs, Summary, table
from rnnlab.studies.runner import write_study
from rnnlab.studies.stats import measurement

ENV = {"cores": 2, "torch": "x", "python": "3", "platform": "p", "workers": 2,
       "executor": "local"}


def external_refs(html: str) -> list[str]:
    """Every src=/href= value that is not a data: URI or an in-page anchor."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", html, flags=re.I)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def _claim(cid, values, crit, **kw):
    return cl.claim(cid, f"statement of {cid}", "the notes' words", cl.source("side", "§1",
                                                                              "A et al."),
                    crit, "prediction", measurement(values, list(range(len(values)))), **kw)


def _study(tmp_path, name, claims, figure=True, profile="default", tables=()):
    def summarise(runs, prof, seeds):
        figs = []
        if figure:
            fig = Figure(figsize=(2, 2))
            fig.add_subplot().plot([0, 1], [1, 0])
            figs.append(("curve", fig, "Look at the slope."))
        return Summary(claims, figs, list(tables), ["a note"], {"k": 1}, {"x": [1.0]})

    module = SimpleNamespace(INTRO={"title": f"Title {name}", "question": "Q?", "quote": "Q",
                                    "source": cl.source("side", "§2"), "method": "M"},
                             summarise=summarise)
    runs = [{"study": name, "arm": "a", "seed": s, "status": "ok", "init_fingerprint": "ab",
             "wall_s": 1.0, "cpu_s": 0.5} for s in (0, 1, 2)]
    return write_study(name, module, runs, profile, [0, 1, 2], tmp_path / name, ENV)


def _row(html: str, claim_id: str) -> str:
    rows = re.findall(r"<tr>.*?</tr>", html, flags=re.S)
    return next(r for r in rows if f">{claim_id}</a>" in r)


def test_three_verdicts_render_as_measured_with_their_reasons(tmp_path):
    _study(tmp_path, "alpha", [
        _claim("good", [0.95, 0.96, 0.97], cl.above(0.9)),
        _claim("bad", [0.5, 0.6, 0.55], cl.above(0.9)),
        _claim("open", [0.8, 0.95, 1.05], cl.above(0.9)),
    ])
    html = report.write_report(tmp_path).read_text()
    assert 'class="ok">holds' in _row(html, "good")
    assert 'class="fail">does not hold' in _row(html, "bad")
    assert 'class="na">inconclusive' in _row(html, "open")
    assert "0.55 [" in _row(html, "bad")                     # mean and interval
    assert "straddles 0.9" in html and "lies entirely at or below" in html
    assert "1 hold</span>" in html and "1 do not hold</span>" in html
    assert "1 inconclusive</span>" in html
    assert "<svg" in html and "per seed: 0: 0.5, 1: 0.6, 2: 0.55" in html
    assert "verdicts are not meaningful" not in html         # a default-profile page


def test_header_quick_warning_and_machine(tmp_path):
    _study(tmp_path, "alpha", [_claim("c", [1.0, 1.0], cl.above(0.5))], profile="quick")
    (tmp_path / "session.json").write_text(json.dumps(
        {"profile": "quick", "environment": ENV, "wall_time_s": 125.0, "cpu_time_s": 200.0,
         "runs": 3, "failed_runs": 0}))
    html = report.write_report(tmp_path).read_text()
    assert "verdicts are not meaningful" in html
    assert "2 cores" in html and "2 min 05 s wall" in html and "3 min 20 s CPU" in html


def test_self_contained_with_captioned_figures(tmp_path):
    _study(tmp_path, "alpha", [_claim("c", [1.0, 1.0], cl.above(0.5))])
    _study(tmp_path, "beta", [_claim("d", [1.0, 1.0], cl.above(0.5))])
    html = report.write_report(tmp_path, order=["beta", "alpha"]).read_text()
    assert external_refs(html) == []
    assert html.count("data:image/png;base64,") == 2 and "Look at the slope." in html
    assert html.index('id="study-beta"') < html.index('id="study-alpha"')


def test_escaping_and_literal_reading(tmp_path):
    c = _claim("x", [1.0, 1.0], cl.above(0.5),
               literal={"reading": "<script>alert(1)</script>", "measured": "m",
                        "explanation": "e"})
    _study(tmp_path, "one", [c])
    html = report.write_report(tmp_path / "one").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "Read literally:" in html


def test_no_results_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        report.write_report(tmp_path)


def test_results_json_structure(tmp_path):
    doc = _study(tmp_path, "alpha", [_claim("c", [0.5, None, 0.7, 0.6], cl.above(0.1))])
    on_disk = json.loads((tmp_path / "alpha" / "results.json").read_text())
    assert on_disk == doc
    assert {"study", "profile", "seeds", "intro", "environment", "claims", "counts", "figures",
            "tables", "runs", "config", "data", "cpu_time_s"} <= set(doc)
    (claim,) = doc["claims"]
    assert claim["measured"]["per_seed"] == [0.5, None, 0.7, 0.6] and claim["measured"]["n"] == 3
    assert claim["criterion"] == {"text": "> 0.1", "op": ">", "value": 0.1}
    assert doc["figures"] == [{"path": "figures/curve.png", "caption": "Look at the slope."}]
    assert doc["counts"] == {"holds": 1, "does not hold": 0, "inconclusive": 0}


def test_a_study_whose_summary_fails_keeps_its_runs(tmp_path):
    module = SimpleNamespace(INTRO={}, summarise=lambda runs, p, s: 1 / 0)
    doc = write_study("broken", module, [{"arm": "a", "seed": 0, "status": "ok"}], "quick",
                      [0], tmp_path / "broken", ENV)
    assert doc["runs"] and "ZeroDivisionError" in doc["error"]
    html = report.write_report(tmp_path).read_text()
    assert "summary of this study failed" in html


def test_tables_and_fmt(tmp_path):
    _study(tmp_path, "t", [_claim("c", [1.0, 1.0], cl.above(0.5))], tables=[
        table("Lab 03", ["model", "steps"], [["rnn", None], ["lstm", 800.0]])])
    html = report.write_report(tmp_path).read_text()
    assert "<caption>Lab 03</caption>" in html
    assert '<td class="num">rnn</td><td class="num">—</td>' in html
    assert '<td class="num">800</td>' in html
    assert report.fmt(0.000123456) == "0.000123" and report.fmt(None) == "—"
    assert report.fmt(True) == "yes" and report.fmt([1.23456, 2]) == "[1.23, 2]"
    assert Runs([]).seeds() == []
