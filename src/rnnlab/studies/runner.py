"""Run studies: plan every run, execute them all on one executor, judge, write results.json.

All the runs of all the requested studies go to one executor at once (largest expected cost
first, so the workers stay busy to the end); each study is then summarised from its own
results, in the order of its plan, so the numbers do not depend on the number of workers or on
which run finished first.

Per study ``OUT/results.json`` holds the profile, the seeds, the machine, every claim (``id``,
``statement``, ``quote``, ``source``, ``criterion``, ``expected``, ``measured`` {``mean``,
``interval``, ``per_seed``}, ``verdict``, ``why``), the tables, the figures with captions and
``runs`` (arm, seed, status, ``init_fingerprint``, the figures of merit, wall and CPU time).
``session.json`` beside them: the whole session (time, workers, counts per verdict).
Each finished run is also cached in ``OUT[/NAME]/runs/`` (``cache.py``): the same command with the
same ``--out`` resumes, running only what is missing.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from pathlib import Path

import torch

from ..console import Progress, log
from ..files import jsonable, why, write_json
from . import cache
from . import executor as executors
from .claims import counts, mark_failures
from .common import Runs, save_figure
from .executor import RunSpec, execute, study_module


def seed_list(module, profile: str, seeds: int | None, first_seed: int) -> list[int]:
    n = seeds if seeds is not None else module.SEEDS[profile]
    return list(range(first_seed, first_seed + n))


def environment(ex: executors.Executor) -> dict:
    return {"cores": executors.default_workers(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(terse=True), "machine": platform.machine(),
            "torch_threads_per_run": 1, **ex.describe()}


def untimed(doc):
    """A results.json without what differs between two identical runs: timings (every key
    ending in ``_s``) and the description of the machine and executor (``environment``)."""
    if isinstance(doc, dict):
        return {k: untimed(v) for k, v in doc.items()
                if not k.endswith("_s") and k != "environment"}
    if isinstance(doc, list):
        return [untimed(v) for v in doc]
    return doc


def run_studies(names: list[str], profile: str = "default", *, seeds: int | None = None,
                first_seed: int = 0, workers: int | None = None, executor: str = "local",
                out: Path | str, nested: bool = True, executor_options: dict | None = None,
                ) -> dict[str, dict]:
    """Run the studies ``names``; write ``out/NAME/results.json`` (``nested``) or
    ``out/results.json`` (one study); return {name: results.json content}."""
    started = time.perf_counter()
    out = Path(out)
    ex = executors.get(executor, workers, **(executor_options or {}))
    modules = {n: study_module(n) for n in names}
    seed_lists = {n: seed_list(modules[n], profile, seeds, first_seed) for n in names}
    plans = {n: modules[n].plan(profile, seed_lists[n]) for n in names}
    seed_lists = {n: sorted({s.seed for s in plans[n]}) for n in names}  # the seeds run
    specs: list[RunSpec] = [s for n in names for s in plans[n]]
    folders = {n: out / n if nested else out for n in names}
    results: list[dict] = [{}] * len(specs)
    for i, s in enumerate(specs):  # the resume cache: runs a previous session finished
        results[i] = cache.load(folders[s.study], s) or {}
    order = sorted((i for i in range(len(specs)) if not results[i]),
                   key=lambda i: (-specs[i].cost, i))  # largest first: workers busy to the end
    total = sum(specs[i].cost for i in order) or 1.0
    if len(order) < len(specs):
        log(f"{len(specs) - len(order)} of {len(specs)} runs from the cache "
            f"({', '.join(str(folders[n] / 'runs') for n in names)}), {len(order)} to run")
    workers_s = ex.workers or "the cluster's"  # a Ray cluster: its CPUs, known once joined
    log(f"{len(order)} runs ({', '.join(names)}; {profile}) on {workers_s} "
        f"worker{'s' if ex.workers != 1 else ''} ({ex.name})")
    state = {"done": 0, "cost": 0.0}
    with Progress(len(order), "study runs", unit="run") as bar:
        def on_done(k: int, r: dict) -> None:
            spec = specs[order[k]]
            state["done"] += 1
            state["cost"] += spec.cost
            if r.get("status") != "ok":
                log(f"  run failed: {r['study']} {r['arm']} seed {r['seed']}: {r.get('error')}")
            try:
                cache.save(folders[spec.study], spec, r)
            except OSError as e:  # the run is kept in memory; only a resume would redo it
                log(f"  cannot cache {spec.key}: {e.filename}: {why(e)}")
            bar.update(state["done"], f"last: {r['study']} {r['arm']} seed {r['seed']}",
                       fraction=state["cost"] / total)

        done = ex.map(execute, [specs[i] for i in order], on_done) if order else []
    for j, i in enumerate(order):
        results[i] = done[j]
    env = environment(ex)
    docs = {}
    for n in names:
        mine = [r for s, r in zip(specs, results, strict=True) if s.study == n]
        docs[n] = write_study(n, modules[n], mine, profile, seed_lists[n], folders[n], env)
    session = {"studies": names, "profile": profile, "seeds": seeds, "first_seed": first_seed,
               "environment": env, "wall_time_s": round(time.perf_counter() - started, 1),
               "cpu_time_s": round(sum(r.get("cpu_s") or 0 for r in results), 1),
               "runs": len(results), "cached_runs": len(specs) - len(order),
               "failed_runs": sum(r.get("status") != "ok" for r in results),
               "counts": counts([c for d in docs.values() for c in d.get("claims", [])])}
    write_json(out / "session.json", session)
    return docs


def write_study(name: str, module, results: list[dict], profile: str, seeds: list[int],
                out: Path, env: dict) -> dict:
    """Summarise one study's runs and write its results.json and figures."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"study": name, "profile": profile, "seeds": seeds, "intro": module.INTRO,
           "environment": env,
           "cpu_time_s": round(sum(r.get("cpu_s") or 0 for r in results), 2),
           "run_wall_time_s": round(sum(r.get("wall_s") or 0 for r in results), 2)}
    try:
        summary = module.summarise(Runs(results), profile, seeds)
    except Exception as e:  # keep the runs: they cost the time
        log(f"[red]study {name}: summary failed[/red]: {type(e).__name__}: {e}")
        doc.update(claims=[], counts=counts([]), figures=[], tables=[], notes=[], config={},
                   data={}, error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=-4), runs=results)
        write_json(out / "results.json", doc)
        return jsonable(doc)
    mark_failures(summary.claims, results)
    claims = [c.to_dict() for c in summary.claims]
    figures = [{"path": save_figure(fig, out, fname), "caption": caption}
               for fname, fig, caption in summary.figures]
    doc.update(claims=claims, counts=counts(claims), figures=figures, tables=summary.tables,
               notes=summary.notes, config=summary.config, data=summary.data, runs=results)
    write_json(out / "results.json", doc)
    return jsonable(doc)
