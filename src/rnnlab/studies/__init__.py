"""``rnnlab study``: every claim of the course notes, measured on this machine, as evidence.

Each study is one file (``gradflow.py``, ``regimes.py``, ...): a list of independent runs
(arm × seed, ``plan``), one pure function per run (``run_one``) and a summary that judges the
notes' claims over the seeds (``summarise``): a mean with a 95 % interval, the per-seed values and
one of three verdicts — holds, does not hold, inconclusive (``claims.py``, ``stats.py``). The runs
go to an executor (``executor.py``: a local pool of worker processes, one torch thread each;
``ray_executor.py``: one Ray task per run, on this machine or a cluster; other backends register
themselves) and the results do not depend on the number of workers or where they run. Finished
runs are cached in the output folder (``cache.py``), so the same command resumes.

    from rnnlab import studies
    studies.run("forget-bias", profile="quick", out="runs/fb")            # runs/fb/results.json
    studies.run_all(profile="default", out="runs/all", workers=2)       # runs/all/NAME/...

The HTML report is ``rnnlab.report.write_report(out, order=studies.names())``: the studies never
import the report (the command line writes it).

Profiles: ``quick`` (every study in seconds, 1 seed: the plumbing, not evidence), ``default``
(≥ 3 seeds per training claim, 8 paired seeds for the forget bias; ≤ 10 min on 2 cores),
``full`` (the budgets that decide what the default leaves inconclusive). ``seeds=N`` sets the
number of seeds of every study.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..runs import new_run_dir
from . import executor
from .common import PROFILES, log
from .runner import run_studies


def _ray(workers: int | None = None, **options) -> executor.Executor:
    """``--executor ray`` (``ray_executor.py``): Ray is imported only when it is chosen."""
    from .ray_executor import RayExecutor
    return RayExecutor(workers=workers, **options)


executor.register("ray", _ray)

# study name -> module (in the order the report shows them)
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


def _check(names_: list[str], profile: str, seeds: int | None) -> None:
    for name in names_:
        if name not in REGISTRY:
            raise UserError(f"unknown study '{name}'; one of: {', '.join(['all', *REGISTRY])}")
    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'; one of: {', '.join(PROFILES)}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int)
                              or seeds < 1):
        raise UserError(f"--seeds must be an integer ≥ 1, got {seeds!r}")


def run(name: str, profile: str = "default", seed: int = 0, out: Path | str | None = None, *,
        seeds: int | None = None, workers: int | None = None, executor: str = "local",
        executor_options: dict | None = None) -> dict:
    """Run one study (seeds ``seed``, ``seed + 1``, ...); write ``out/results.json`` and
    ``out/figures``; return the results. ``executor_options``: e.g. {"address": "auto"} for
    Ray."""
    _check([name], profile, seeds)
    out = Path(out) if out is not None else new_run_dir(f"study-{name}")
    return run_studies([name], profile, seeds=seeds, first_seed=seed, workers=workers,
                       executor=executor, out=out, nested=False,
                       executor_options=executor_options)[name]


def run_all(profile: str = "default", seed: int = 0, out: Path | str | None = None,
            only: list[str] | None = None, *, seeds: int | None = None,
            workers: int | None = None, executor: str = "local",
            executor_options: dict | None = None) -> dict[str, dict]:
    """Run every study (or those in ``only``) into ``out/NAME/``, all runs on one executor."""
    chosen = list(only or names())
    _check(chosen, profile, seeds)
    out = Path(out) if out is not None else new_run_dir("study-all")
    docs = run_studies(chosen, profile, seeds=seeds, first_seed=seed, workers=workers,
                       executor=executor, out=out, nested=True,
                       executor_options=executor_options)
    for name, doc in docs.items():
        c = doc.get("counts", {})
        log(f"  {name}: " + ", ".join(f"{v} {k}" for k, v in c.items()))
    return docs
