"""Shared bits of the studies: profiles, seeds, the runs of a study, its summary, figures.

A study module defines

    NAME, INTRO                          # its name; what the notes say (quoted) and what it does
    plan(profile, seeds) -> [RunSpec]    # the runs: arm × seed, each with the arm's settings
    run_one(spec) -> dict                # one run (pure): builds its model from spec.seed,
                                         # returns "init_fingerprint" and its figures of merit
    summarise(runs, profile, seeds) -> Summary   # claims, figures, tables, notes, config

and ``rnnlab.studies.runner`` executes the plans (``executor``), judges and writes results.json.

Pairing: the runs of one seed draw the same data (training and validation batches come from
the seed), and where two arms share an architecture they start from the same weights:
``init_fingerprint`` hashes the model as built from the seed *before* the arm's own treatment
(a forget-gate bias, a scale of W_hh or of the inputs), so such arms show the same
fingerprint within a seed and different ones across seeds. Arms of different architectures
(RNN vs LSTM) are paired by seed and data only; their fingerprints differ.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..console import log as log  # the studies' one status line
from ..layers import LSTM
from .claims import Claim
from .executor import RunSpec

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


def sig(x, digits: int = 3) -> float | None:
    """Round to `digits` significant digits (None for None/NaN/inf): readable results.json."""
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def specs(study: str, profile: str, seeds, arms: dict[str, dict], cost: dict | float = 1.0):
    """One RunSpec per arm × seed (arms: {arm: settings}; cost: per arm or one number)."""
    return [RunSpec(study, arm, s, profile, dict(settings),
                    cost[arm] if isinstance(cost, dict) else cost)
            for arm, settings in arms.items() for s in seeds]


class Runs:
    """The results of a study's runs, by arm and seed (failed runs kept apart)."""

    def __init__(self, results: list[dict]):
        self.all = list(results)

    def ok(self, arm: str) -> dict[int, dict]:
        return {r["seed"]: r for r in sorted(self.all, key=lambda r: r["seed"])
                if r["arm"] == arm and r.get("status") == "ok"}

    def seeds(self, *arms: str) -> list[int]:
        """Seeds at which every one of ``arms`` has an ok run (all planned seeds if none)."""
        seeds = sorted({r["seed"] for r in self.all})
        return [s for s in seeds if all(s in self.ok(a) for a in arms)]

    def values(self, arm: str, key, seeds=None) -> list:
        """r[key] (or key(r) for a callable) for each seed; None where the run failed."""
        ok = self.ok(arm)
        seeds = self.seeds() if seeds is None else seeds
        get = key if callable(key) else (lambda r: r.get(key))
        return [get(ok[s]) if s in ok else None for s in seeds]

    def first(self, arm: str) -> dict | None:
        ok = self.ok(arm)
        return ok[min(ok)] if ok else None


@dataclass
class Summary:
    """What ``summarise`` returns: the runner writes it into results.json and figures/."""

    claims: list[Claim]
    figures: list = field(default_factory=list)   # (name, matplotlib Figure, caption)
    tables: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)      # derived numbers (results.json "data")


def table(title: str, columns: list[str], rows: list[list], note: str = "") -> dict:
    """A table for the report: rows of cells (numbers are shown to 3 significant digits)."""
    return {"title": title, "columns": columns, "rows": rows, "note": note}


def save_figure(fig, out: Path, name: str) -> str:
    """Save a matplotlib Figure to out/figures/name.png; return the relative path."""
    fdir = Path(out) / "figures"
    fdir.mkdir(parents=True, exist_ok=True)
    fig.savefig(fdir / f"{name}.png", dpi=110)
    return f"figures/{name}.png"


def generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def set_forget_bias(model: torch.nn.Module, b: float) -> torch.nn.Module:
    """b_ih_f + b_hh_f = b in every LSTM layer of ``model`` (what ``forget_bias=`` does at build
    time), applied after the fingerprint, so arms differing only in b share their weights."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LSTM):
                H = m.hidden_size
                for name, p in m.named_parameters(recurse=False):
                    if name.startswith("bias_ih"):
                        p[H:2 * H].fill_(b)
                    elif name.startswith("bias_hh"):
                        p[H:2 * H].zero_()
    return model


# -- training histories (rnnlab.train.History) ----------------------------------------------
class CpuClock:
    """A ``fit`` callback: the process CPU time since the start at every record (``cpu_s``),
    steadier than wall time on a busy machine."""

    def on_start(self, trainer):
        self.t0 = time.process_time()

    def on_step(self, trainer, record, last):
        record["cpu_s"] = time.process_time() - self.t0


def steps_to(history, metric: str, target: float, higher: bool = True):
    """First evaluation step at which `metric` reached `target` (None if never)."""
    for r in history.evals:
        v = r.get(metric)
        if v is not None and (v >= target if higher else v <= target):
            return r["step"]
    return None


def curve(history, metric: str, digits: int = 4) -> dict:
    ev = history.evals
    return {"step": [r["step"] for r in ev], metric: [sig(r.get(metric), digits) for r in ev]}


class Outputs(nn.Module):
    """x -> the wrapped module's outputs alone (a recurrent layer also returns its state):
    what the studies differentiate and time."""

    def __init__(self, core: nn.Module):
        super().__init__()
        self.core = core

    def forward(self, x):
        out = self.core(x)
        return out[0] if isinstance(out, tuple) else out
