"""A tiny study for the executor tests (``study_module("fakes.study")``): runs that count their
executions, raise, or kill their worker once.

The test sets ``ARMS`` (arm -> settings) in the driver before planning; a worker sees only the
settings its spec carries: ``log`` (a file each execution appends "arm seed" to), ``value``,
``fail`` (raise every time), ``crash_once`` (a marker prefix: the first attempt per seed calls
``os._exit(1)``, as a lost worker, and leaves the marker; the retry succeeds).
"""

from __future__ import annotations

import os
from pathlib import Path

from rnnlab.studies.claims import above, claim, source
from rnnlab.studies.common import Summary, specs
from rnnlab.studies.stats import measurement

NAME = "fakes.study"
SEEDS = {"quick": 2, "default": 2, "full": 2}
INTRO = {"title": "Fake", "question": "Do the runs come back?", "quote": "(a test)",
         "source": source("side", "(none)"), "method": "Return the value."}
ARMS: dict[str, dict] = {"good": {"value": 1.0}}


def plan(profile: str, seeds: list[int]):
    return specs(NAME, profile, seeds, ARMS, cost=0.1)


def run_one(spec) -> dict:
    s = spec.settings
    if s.get("log"):
        with open(s["log"], "a") as f:
            f.write(f"{spec.arm} {spec.seed}\n")
    if s.get("fail"):
        raise RuntimeError(f"boom in {spec.arm}")
    if s.get("crash_once"):
        marker = Path(f"{s['crash_once']}-{spec.seed}")
        if not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies, as on a lost node
    return {"init_fingerprint": str(spec.seed), "value": s.get("value", 1.0)}


def summarise(runs, profile: str, seeds: list[int]) -> Summary:
    claims = []
    for arm in ARMS:
        ok = runs.ok(arm)
        m = measurement([ok[s]["value"] for s in sorted(ok)], sorted(ok))
        claims.append(claim(f"{arm}_positive", f"{arm} is positive", INTRO["quote"],
                            INTRO["source"], above(0.0), "> 0", m, arms=(arm,)))
    return Summary(claims)
