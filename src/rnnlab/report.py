"""The self-contained HTML report: every study's claims with measured values, verdicts, figures.

``write_report(dir, order)`` reads ``dir/results.json`` (one study) or ``dir/*/results.json``
(``rnnlab study all``; shown in ``order``, the caller's list of study names, then the rest
alphabetically), embeds each figure as a base64 ``data:`` URI and writes ``dir/report.html``: one
file, no external links, readable offline. A claim whose ``holds`` is false is shown as not
holding (and counted as such in the summary); ``null`` is shown as "not judged".
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import jinja2

from . import files
from .errors import UserError

VERDICTS = {True: ("holds", "ok"), False: ("does not hold", "fail"), None: ("not judged", "na")}


def fmt(value, digits: int = 3) -> str:
    """A value as short text: numbers to `digits` significant digits, dicts/lists as JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list)):
        def short(v):
            if isinstance(v, float):
                return float(f"{v:.{digits}g}")
            if isinstance(v, dict):
                return {k: short(x) for k, x in v.items()}
            if isinstance(v, list):
                return [short(x) for x in v]
            return v
        return json.dumps(short(value), ensure_ascii=False)
    return str(value)


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _study_dirs(root: Path, order: Sequence[str] = ()) -> list[Path]:
    if (root / "results.json").is_file():
        return [root]
    dirs = [p.parent for p in root.glob("*/results.json")]
    rank = {name: i for i, name in enumerate(order)}
    return sorted(dirs, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def load_studies(root: Path, order: Sequence[str] = ()) -> list[dict]:
    studies = []
    for d in _study_dirs(root, order):
        try:
            doc = json.loads((d / "results.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read {d / 'results.json'}: {e}") from e
        claims = []
        for c in doc.get("claims", []):
            label, css = VERDICTS.get(c.get("holds"), VERDICTS[None])
            claims.append({**c, "verdict": label, "css": css,
                           "expected_s": fmt(c.get("expected")),
                           "measured_s": fmt(c.get("measured"))})
        figures = []
        for rel in doc.get("figures", []):
            uri = _data_uri(d / rel)
            if uri is not None:
                figures.append({"name": Path(rel).stem, "uri": uri})
        tables = [{"title": t.get("title", ""), "columns": t.get("columns", []),
                   "rows": [[fmt(v) for v in row] for row in t.get("rows", [])]}
                  for t in doc.get("tables", [])]
        studies.append({"name": doc.get("study", d.name), "dir": d.name, "doc": doc,
                        "tables": tables,
                        "claims": claims, "figures": figures,
                        "config_s": json.dumps(doc.get("config", {}), indent=1),
                        "notes": doc.get("notes", []),
                        "profile": doc.get("profile"), "seed": doc.get("seed"),
                        "wall_time_s": doc.get("wall_time_s")})
    return studies


def render(studies: list[dict], title: str = "rnnlab study report") -> str:
    template = resources.files("rnnlab").joinpath("templates/report.html").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    all_claims = [c for s in studies for c in s["claims"]]
    summary = {label: sum(1 for c in all_claims if c["verdict"] == label)
               for label, _ in VERDICTS.values()}
    return env.from_string(template).render(
        title=title, studies=studies, summary=summary, n_claims=len(all_claims),
        total_time=sum(s["wall_time_s"] or 0 for s in studies),
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"))


def write_report(directory: Path | str, order: Sequence[str] = ()) -> Path:
    """Write ``directory/report.html`` from the results.json files under it; return its path."""
    root = Path(directory)
    studies = load_studies(root, order)
    if not studies:
        raise UserError(f"no results.json in {root} or its subfolders")
    path = root / "report.html"
    return files.write_text(path, render(studies))
