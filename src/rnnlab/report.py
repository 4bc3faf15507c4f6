"""The self-contained HTML report: the studies' claims as evidence a student can read and cite.

``write_report(dir, order)`` reads ``dir/results.json`` (one study) or ``dir/*/results.json``
(``rnnlab study all``; shown in ``order``, the caller's list of study names, then the rest
alphabetically) and ``dir/session.json`` when present, embeds each figure as a base64 ``data:``
URI and writes ``dir/report.html``: one file, no external links, readable offline.

The page reads like the results section of a paper: at the top the profile, the seeds, the
machine, the total time and the count of each verdict (with a warning on a quick run); then per
study the claim as the notes state it (quoted, with its lesson and the paper it cites), and per
claim the prediction, the criterion, the measurement (mean, 95 % interval, per-seed values, and
a small strip plot of them against the criterion), the verdict with its reason, the literal
reading where the fair test differs, the figures with captions saying what to look at, and a
collapsed "data" block. results.json keeps everything.
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
from markupsafe import Markup

from . import files
from .errors import UserError

CSS = {"holds": "ok", "does not hold": "fail", "inconclusive": "na"}


def fmt(value, digits: int = 3) -> str:
    """A value as short text: numbers to `digits` significant digits, lists and dicts inline."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return str(value)


def measured_text(m: dict | None) -> str:
    """'0.61 [0.55, 0.67], 3 seeds' for a claim's measured block."""
    if not m:
        return "—"
    iv = m.get("interval")
    s = fmt(m.get("mean"))
    if iv:
        s += f" [{fmt(iv[0])}, {fmt(iv[1])}]"
    n = m.get("n", 0)
    if "k" in m and isinstance(m["k"], int):
        s += f" ({m['k']}/{n})"
    return f"{s}, {n} seed{'s' if n != 1 else ''}"


def strip_svg(m: dict, crit: dict, width: int = 300, height: int = 46) -> Markup:
    """A small picture of one measurement: the per-seed values (dots), the mean and its 95 %
    interval (bar, diamond) and the criterion (the region that passes, shaded green)."""
    vals = [v for v in m.get("per_seed", []) if isinstance(v, (int, float)) and math.isfinite(v)]
    iv = m.get("interval") or []
    refs = [crit.get(k) for k in ("value", "lo", "hi") if crit.get(k) is not None]
    pts = vals + [v for v in iv if v is not None] + refs + ([m["mean"]] if m.get("mean")
                                                          is not None else [])
    if not pts or crit.get("op") == "all":
        return Markup("")
    log = m.get("scale") == "log" and all(p > 0 for p in pts)
    tr = (lambda v: math.log10(v)) if log else (lambda v: v)
    lo, hi = min(map(tr, pts)), max(map(tr, pts))
    pad = (hi - lo) * 0.08 or (abs(hi) * 0.1 or 1.0)
    lo, hi = lo - pad, hi + pad
    x = lambda v: 10 + (width - 20) * (tr(v) - lo) / (hi - lo)
    y0 = 22
    parts = [f'<svg width="{width}" height="{height}" '
             f'role="img" aria-label="per-seed values against the criterion">']
    op = crit.get("op")
    if op in (">", "<"):
        a = x(crit["value"])
        left, right = (a, width - 10) if op == ">" else (10, a)
        parts.append(f'<rect x="{left:.1f}" y="6" width="{max(0, right - left):.1f}" height="32"'
                     ' fill="#e6f4ea"/>')
        parts.append(f'<line x1="{a:.1f}" y1="4" x2="{a:.1f}" y2="40" stroke="#1e6b33" '
                     'stroke-dasharray="3,2"/>')
    elif op == "within":
        a, b = x(crit["lo"]), x(crit["hi"])
        parts.append(f'<rect x="{a:.1f}" y="6" width="{max(0, b - a):.1f}" height="32" '
                     'fill="#e6f4ea"/>')
    parts.append(f'<line x1="10" y1="{y0}" x2="{width - 10}" y2="{y0}" stroke="#bbb"/>')
    if len(iv) == 2 and None not in iv:
        parts.append(f'<line x1="{x(iv[0]):.1f}" y1="{y0}" x2="{x(iv[1]):.1f}" y2="{y0}" '
                     'stroke="#222" stroke-width="3"/>')
    for v in vals:
        parts.append(f'<circle cx="{x(v):.1f}" cy="{y0 - 9}" r="3" fill="#1f77b4" '
                     'fill-opacity="0.75"/>')
    if m.get("mean") is not None:
        c = x(m["mean"])
        parts.append(f'<path d="M{c:.1f},{y0 - 5} l5,5 l-5,5 l-5,-5 z" fill="#222"/>')
    for v in sorted(set(refs)):
        parts.append(f'<text x="{x(v):.1f}" y="{height - 1}" font-size="9" text-anchor="middle"'
                     f' fill="#1e6b33">{fmt(v)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


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


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from e


def load_studies(root: Path, order: Sequence[str] = ()) -> list[dict]:
    studies = []
    for d in _study_dirs(root, order):
        doc = _read(d / "results.json")
        claims, seen = [], {(doc.get("intro") or {}).get("quote")}
        for c in doc.get("claims", []):
            m, crit = c.get("measured") or {}, c.get("criterion") or {}
            claims.append({**c, "css": CSS.get(c.get("verdict"), "na"),
                           "show_quote": c.get("quote") not in seen,  # each quote once
                           "measured_s": measured_text(m), "svg": strip_svg(m, crit),
                           "per_seed_s": ", ".join(f"{s}: {fmt(v)}" for s, v in
                                                   zip(m.get("seeds", []),
                                                       m.get("per_seed", []), strict=False))})
            seen.add(c.get("quote"))
        figures = [{"caption": f.get("caption", ""), "uri": _data_uri(d / f["path"]),
                    "name": Path(f["path"]).stem} for f in doc.get("figures", [])]
        tables = [{"title": t.get("title", ""), "columns": t.get("columns", []),
                   "note": t.get("note", ""),
                   "rows": [[fmt(v) for v in row] for row in t.get("rows", [])]}
                  for t in doc.get("tables", [])]
        runs = [{k: v for k, v in r.items() if not isinstance(v, (dict, list))}
                for r in doc.get("runs", [])]
        studies.append({"name": doc.get("study", d.name), "dir": d.name, "doc": doc,
                        "intro": doc.get("intro") or {}, "claims": claims,
                        "figures": [f for f in figures if f["uri"]], "tables": tables,
                        "notes": doc.get("notes", []), "error": doc.get("error"),
                        "data_s": json.dumps({"config": doc.get("config", {}), "runs": runs,
                                              "data": doc.get("data", {})}, indent=1,
                                             ensure_ascii=False),
                        "seeds": doc.get("seeds", []), "profile": doc.get("profile"),
                        "cpu_time_s": doc.get("cpu_time_s")})
    return studies


def clock(seconds) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{seconds:.1f} s"


def render(studies: list[dict], session: dict | None = None,
           title: str = "rnnlab: the course notes' claims, measured") -> str:
    template = resources.files("rnnlab").joinpath("templates/report.html").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    all_claims = [c for s in studies for c in s["claims"]]
    summary = {v: sum(1 for c in all_claims if c.get("verdict") == v) for v in CSS}
    session = session or {}
    first = studies[0]["doc"] if studies else {}
    env_info = session.get("environment") or first.get("environment") or {}
    seeds = {s["name"]: len(s["seeds"]) for s in studies}
    profile = session.get("profile") or first.get("profile") or "?"
    cpu = session.get("cpu_time_s", sum(s["cpu_time_s"] or 0 for s in studies))
    return env.from_string(template).render(
        title=title, studies=studies, summary=summary, n_claims=len(all_claims),
        profile=profile, quick=profile == "quick", env=env_info, seeds=seeds,
        wall=clock(session.get("wall_time_s")), cpu=clock(cpu),
        failed_runs=session.get("failed_runs", 0), runs=session.get("runs"),
        cached_runs=session.get("cached_runs", 0),
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"))


def write_report(directory: Path | str, order: Sequence[str] = ()) -> Path:
    """Write ``directory/report.html`` from the results.json files under it; return its path."""
    root = Path(directory)
    studies = load_studies(root, order)
    if not studies:
        raise UserError(f"no results.json in {root} or its subfolders")
    session = _read(root / "session.json") if (root / "session.json").is_file() else None
    path = root / "report.html"
    return files.write_text(path, render(studies, session))
