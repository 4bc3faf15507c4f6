"""report.write_report: one self-contained HTML page, verdicts as measured (never flattering)."""

import json
import re

import pytest
from matplotlib.figure import Figure

from rnnlab import report
from rnnlab.errors import UserError
from rnnlab.studies.common import Claim, StudyOutput, write_results


def external_refs(html: str) -> list[str]:
    """Every src=/href= value that is not a data: URI or an in-page anchor."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", html, flags=re.I)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def _study(tmp_path, name, claims, with_figure=True):
    d = tmp_path / name
    figures = []
    if with_figure:
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().plot([0, 1], [1, 0])
        (d / "figures").mkdir(parents=True)
        fig.savefig(d / "figures" / "curve.png", dpi=50)
        figures = ["figures/curve.png"]
    so = StudyOutput(name, "quick", 0, {"k": 1}, {"numbers": [1.0, float("nan")]}, claims,
                     figures, ["a note"])
    return write_results(d, so, started=0.0)


def _row(html: str, claim_id: str) -> str:
    rows = re.findall(r"<tr>.*?</tr>", html, flags=re.S)
    return next(r for r in rows if f"<td>{claim_id}</td>" in r)


def test_verdicts_render_as_measured(tmp_path):
    _study(tmp_path, "alpha", [
        Claim("good", "a claim that holds", 1.0, 1.01, True),
        Claim("bad", "a claim that does not hold", "ratio ~ 1", 0.005, False),
        Claim("unknown", "a claim that could not be judged", 1.0, None, None),
    ])
    path = report.write_report(tmp_path)
    assert path == tmp_path / "report.html"
    html = path.read_text()
    assert 'class="fail">does not hold' in _row(html, "bad")
    assert "0.005" in _row(html, "bad")
    assert 'class="ok">holds' in _row(html, "good")
    assert "not judged" in _row(html, "unknown")
    # the summary counts one of each
    assert "1 hold</span>" in html and "1 do not hold</span>" in html
    assert "1 not judged</span>" in html


def test_self_contained_with_embedded_figures(tmp_path):
    _study(tmp_path, "alpha", [Claim("c", "s", 1, 1, True)])
    _study(tmp_path, "beta", [Claim("d", "s", 1, 2, False)], with_figure=True)
    html = report.write_report(tmp_path).read_text()
    assert external_refs(html) == []
    assert html.count("data:image/png;base64,") == 2
    assert 'id="study-alpha"' in html and 'id="study-beta"' in html


def test_single_study_dir_and_escaping(tmp_path):
    d = tmp_path / "one"
    _study(tmp_path, "one", [Claim("x", "<script>alert(1)</script>", "<b>", 1, True)])
    html = report.write_report(d).read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


def test_no_results_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        report.write_report(tmp_path)


def test_results_json_structure(tmp_path):
    doc = _study(tmp_path, "alpha", [Claim("c", "s", {"T": 0.5}, {"T": 0.49}, True, "how")])
    on_disk = json.loads((tmp_path / "alpha" / "results.json").read_text())
    assert on_disk == doc
    assert set(doc) >= {"study", "profile", "seed", "config", "claims", "figures",
                        "wall_time_s", "numbers"}
    assert doc["numbers"] == [1.0, None]  # NaN is written as null, never as invalid JSON
    (claim,) = doc["claims"]
    assert set(claim) >= {"id", "statement", "expected", "measured", "holds"}
    assert claim["holds"] is True and claim["measured"] == {"T": 0.49}


def test_fmt():
    assert report.fmt(0.000123456) == "0.000123"
    assert report.fmt(None) == "—"
    assert report.fmt({"a": 1.23456}) == '{"a": 1.23}'
    assert report.fmt(True) == "yes"


def test_tables_render(tmp_path):
    from rnnlab.studies.common import table

    d = tmp_path / "t"
    so = StudyOutput("t", "quick", 0, {}, {}, [Claim("c", "s", 1, 1, True)], [], [],
                     [table("Lab 03", ["model", "steps"], [["rnn", None], ["lstm", 800.0]])])
    write_results(d, so, started=0.0)
    html = report.write_report(d).read_text()
    assert "<caption>Lab 03</caption>" in html
    assert '<td class="num">rnn</td><td class="num">—</td>' in html
    assert '<td class="num">800</td>' in html
