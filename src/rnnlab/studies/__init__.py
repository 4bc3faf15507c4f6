"""``rnnlab study``: every claim of the course notes, measured on this machine.

Each study is one file (``gradflow.py``, ``regimes.py``, ...) with ``run(profile, seed, out) ->
dict`` that writes ``out/results.json`` (config, numbers, figures' data and ``claims``: a list of
``{"id", "statement", "expected", "measured", "holds"}``) and ``out/figures/*.png``.

    from rnnlab import studies
    studies.run("gradflow", profile="quick", seed=0, out=Path("runs/gf"))
    studies.run_all(profile="default", seed=0, out=Path("runs/all"))  # runs/all/NAME/...

The HTML report is ``rnnlab.report.write_report(out, order=studies.names())``: the studies never
import the report (the command line writes it).

Profiles: ``quick`` (all studies ≤ 2 min on 2 CPU cores; CI), ``default`` (all ≤ 10 min),
``full`` (publication sizes).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import torch

from ..errors import UserError
from ..runs import new_run_dir
from .common import PROFILES, log

# study name -> module (in the order the report shows them). A study whose dependencies
# (rnnlab.data / models / train) are missing is not listed here.
REGISTRY: dict[str, str] = {
    "gradflow": "gradflow",
    "regimes": "regimes",
    "race": "race",
    "forget-bias": "forget_bias",
    "long-range": "long_range",
    "bottleneck": "bottleneck",
    "params": "params",
    "parallelism": "parallelism",
}


def names() -> list[str]:
    return list(REGISTRY)


def run(name: str, profile: str = "default", seed: int = 0, out: Path | str | None = None) -> dict:
    """Run one study; write ``out/results.json`` and ``out/figures``; return the results dict."""
    if name not in REGISTRY:
        raise UserError(f"unknown study '{name}'; one of: {', '.join(['all', *REGISTRY])}")
    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'; one of: {', '.join(PROFILES)}")
    out = Path(out) if out is not None else new_run_dir(f"study-{name}")
    out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f".{REGISTRY[name]}", __name__)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is faster than two contending ones
    try:
        return module.run(profile=profile, seed=seed, out=out)
    finally:
        torch.set_num_threads(threads)


def run_all(profile: str = "default", seed: int = 0, out: Path | str | None = None,
            only: list[str] | None = None) -> dict[str, dict]:
    """Run every study (or those in ``only``) into ``out/NAME/``."""
    out = Path(out) if out is not None else new_run_dir("study-all")
    results = {}
    for name in only or names():
        t0 = time.perf_counter()
        log(f"[bold]study {name}[/bold] ({profile}) ...")
        results[name] = run(name, profile=profile, seed=seed, out=out / name)
        claims = results[name].get("claims", [])
        ok = sum(1 for c in claims if c.get("holds") is True)
        log(f"  done in {time.perf_counter() - t0:.1f} s: {ok}/{len(claims)} claims hold")
    return results
