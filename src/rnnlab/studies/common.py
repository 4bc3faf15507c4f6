"""Shared bits of the studies: profiles, claims, results.json, figures, progress.

Every study is ``run(profile, seed, out) -> dict``; it writes ``out/results.json`` (config,
numbers, figures' data and ``claims``) and ``out/figures/*.png``. A claim records what the course
notes say (``statement``, ``expected``), what this machine measured (``measured``) and whether the
measurement agrees (``holds``) under a criterion stated in the claim itself. A claim that does not
hold is recorded as not holding: nothing here retries or tunes until it does.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..console import Progress
from ..console import log as log  # the studies' one status line
from ..files import jsonable, write_json

PROFILES = ("quick", "default", "full")


def pick(profile: str, *, quick, default, full=None):
    """The setting for this profile (``full`` falls back to ``default`` when not given)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    if profile == "quick":
        return quick
    if profile == "full" and full is not None:
        return full
    return default


@dataclass
class Claim:
    """One claim of the notes, with its measurement and verdict."""

    id: str
    statement: str  # what the notes claim, and the criterion used to judge it
    expected: object  # the notes' value or condition (JSON-able)
    measured: object  # what this run measured (JSON-able)
    holds: bool | None  # None: could not be judged (e.g. a NaN measurement)
    note: str = ""  # how it was measured / why it may not hold

    def to_dict(self) -> dict:
        d = asdict(self)
        d["holds"] = None if self.holds is None else bool(self.holds)
        return d


def log10_close(measured: float, expected: float, decades: float) -> bool | None:
    """|log10(measured) − log10(expected)| ≤ decades (None if either is not a positive number)."""
    if not (_pos(measured) and _pos(expected)):
        return None
    return abs(math.log10(measured) - math.log10(expected)) <= decades


def _pos(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def sig(x, digits: int = 3) -> float | None:
    """Round to `digits` significant digits (None for None/NaN/inf): readable results.json."""
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


@dataclass
class StudyOutput:
    """What a study hands to ``write_results``."""

    study: str
    profile: str
    seed: int
    config: dict
    results: dict
    claims: list[Claim]
    figures: list[str] = field(default_factory=list)  # paths relative to the study dir
    notes: list[str] = field(default_factory=list)  # method notes shown in the report
    tables: list[dict] = field(default_factory=list)  # {"title", "columns", "rows"} for the report


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": platform.machine()}


def write_results(out: Path, so: StudyOutput, started: float) -> dict:
    """Write ``out/results.json`` and return its content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "study": so.study,
        "profile": so.profile,
        "seed": so.seed,
        "config": so.config,
        "environment": environment(),
        "wall_time_s": round(time.perf_counter() - started, 2),
        "notes": so.notes,
        "figures": so.figures,
        "tables": so.tables,
        **{k: v for k, v in so.results.items()
           if k not in ("claims", "figures", "config", "tables")},
        "claims": [c.to_dict() for c in so.claims],
    }
    write_json(out / "results.json", doc, indent=1)
    return jsonable(doc)


def save_figure(fig, out: Path, name: str) -> str:
    """Save a matplotlib Figure to out/figures/name.png; return the relative path."""
    fdir = Path(out) / "figures"
    fdir.mkdir(parents=True, exist_ok=True)
    fig.savefig(fdir / f"{name}.png", dpi=110)
    return f"figures/{name}.png"


def progress(description: str, items: Iterable, total: int | None = None):
    """Iterate over items with a progress bar on stderr (plain lines when not a terminal)."""
    items = list(items) if total is None else items
    total = len(items) if total is None else total
    with Progress(total, description, unit="item") as bar:
        for i, item in enumerate(items):
            yield item
            bar.update(i + 1)


def generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


# -- training histories (rnnlab.train.History) ----------------------------------------------
def steps_to(history, metric: str, target: float, higher: bool = True):
    """First evaluation step at which `metric` reached `target` (None if never)."""
    for r in history.evals:
        v = r.get(metric)
        if v is not None and (v >= target if higher else v <= target):
            return r["step"]
    return None


def curve(history, metric: str):
    ev = history.evals
    return [r["step"] for r in ev], [sig(r.get(metric), 4) for r in ev]


def table(title: str, columns: list[str], rows: list[list]) -> dict:
    """A table for the report: rows of cells (numbers are shown to 3 significant digits)."""
    return {"title": title, "columns": columns, "rows": rows}
