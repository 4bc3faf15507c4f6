"""Where do study runs go fastest? One study with the local pool (1 and 2 workers) and Ray
(2 workers, a local Ray started and shut down inside the timing), from one run.

    python benchmarks/executors.py                          # regimes, default profile
    python benchmarks/executors.py --study gradflow --profile quick --arms local1,ray2

Each arm is the whole ``run_studies`` call into a fresh folder (no resume cache): planning,
the runs, the summary and figures; for Ray also starting and stopping it (``--repeats``: the arms
interleaved, the median; on a shared machine the load moves the walls). The overhead per task
is (Ray wall − local wall, 2 workers) / tasks. The arms must give identical numbers (only
timings differ), which is checked.

Then the expected time of ``rnnlab study all --full`` on N workers, an estimate: the full plan's
per-run costs (each study's ``plan``: expected CPU seconds per run) scaled by the ratio of
measured CPU to planned cost in this run, packed largest first on N workers (as the runner
does), plus the overhead per task measured here.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from rnnlab import studies
from rnnlab.studies.executor import study_module
from rnnlab.studies.runner import run_studies, seed_list, untimed

ARMS = {"local1": ("local", 1), "local2": ("local", 2), "ray2": ("ray", 2)}


def timed(args, executor: str, workers: int, out: Path) -> tuple[float, dict]:
    """Wall seconds of one study into ``out`` and its results.json."""
    t0 = time.perf_counter()
    doc = run_studies([args.study], args.profile, seeds=args.seeds, workers=workers,
                      executor=executor, out=out, nested=False)[args.study]
    return time.perf_counter() - t0, doc


def planned(profile: str, names: list[str], seeds: int | None = None) -> list[float]:
    """Every run's planned cost (CPU s) in ``profile``, over the studies ``names``."""
    costs = []
    for n in names:
        m = study_module(n)
        costs += [s.cost for s in m.plan(profile, seed_list(m, profile, seeds, 0))]
    return costs


def factors(folder: Path) -> dict[str, float]:
    """Per study, measured CPU / planned cost over the ok runs of a `study all` folder's
    results.json files (their per-run ``cpu_s``)."""
    out = {}
    for path in sorted(Path(folder).glob("*/results.json")):
        doc = json.loads(path.read_text())
        plan = study_module(doc["study"]).plan(doc["profile"], doc["seeds"])
        cost = {(s.arm, s.seed): s.cost for s in plan}
        ok = [r for r in doc["runs"] if r.get("status") == "ok" and (r["arm"], r["seed"]) in cost]
        if ok:
            out[doc["study"]] = (sum(r["cpu_s"] for r in ok)
                                 / sum(cost[r["arm"], r["seed"]] for r in ok))
    return out


def makespan(costs: list[float], workers: int) -> float:
    """Wall time of runs given largest first to the next free worker (the runner's order)."""
    free = [0.0] * workers
    for c in sorted(costs, reverse=True):
        heapq.heapreplace(free, free[0] + c)
    return max(free)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", default="regimes", choices=studies.names())
    ap.add_argument("--profile", default="default", choices=["quick", "default", "full"])
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default: the profile's)")
    ap.add_argument("--arms", default="local1,local2,ray2",
                    help=f"comma-separated, of {', '.join(ARMS)}")
    ap.add_argument("--repeats", type=int, default=1,
                    help="arms interleaved this many times; the median wall is reported")
    ap.add_argument("--full-workers", default="2,8,32,64",
                    help="N for the `study all --full` estimate (empty: none)")
    ap.add_argument("--calibrate", type=Path, default=None, metavar="DIR",
                    help="a `rnnlab study all --out DIR` folder: scale each study's full plan "
                         "by its own measured CPU / planned cost (default: this run's ratio "
                         "for every study)")
    args = ap.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    times: dict[str, list[float]] = {a: [] for a in arms}
    docs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):  # interleaved: a busy moment of the machine hits every arm
            for arm in arms:
                executor, workers = ARMS[arm]
                wall, docs[arm] = timed(args, executor, workers, Path(tmp) / f"{arm}-{k}")
                times[arm].append(wall)
    walls = {a: statistics.median(v) for a, v in times.items()}
    first = docs[arms[0]]
    tasks = len(first["runs"])
    cpu = sum(r.get("cpu_s") or 0 for r in first["runs"])
    print(f"{args.study} ({args.profile}): {tasks} runs, {cpu:.1f} CPU s in the runs "
          f"({arms[0]}); median of {args.repeats}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'executor':>9} {'workers':>8} {'wall s':>8} {'vs ' + arms[0]:>12}  each repeat")
    for arm in arms:
        print(f"{ARMS[arm][0]:>9} {ARMS[arm][1]:8d} {walls[arm]:8.1f} "
              f"{walls[arms[0]] / walls[arm]:11.2f}×  {', '.join(f'{t:.1f}' for t in times[arm])}")
    same = all(untimed(docs[a]) == untimed(first) for a in arms)
    print(f"identical numbers in results.json across arms: {'yes' if same else 'NO'}")
    out = {"tasks": tasks, "cpu_s": cpu, "wall_s": walls, "identical": same}
    if "ray2" in walls and "local2" in walls:
        out["overhead_per_task_s"] = (walls["ray2"] - walls["local2"]) / tasks
        print(f"Ray overhead per task: {out['overhead_per_task_s']:.3f} s "
              "((ray 2 − local 2) / tasks, Ray's start and stop included)")
    ns = [int(n) for n in args.full_workers.split(",") if n]
    if ns:
        factor = cpu / (sum(planned(args.profile, [args.study], args.seeds)) or 1.0)
        scale = {n: factor for n in studies.names()}
        how = f"× {factor:.2f}, the measured CPU / planned cost of this run"
        if args.calibrate:
            scale.update(factors(args.calibrate))
            how = (f"× each study's measured CPU / planned cost in {args.calibrate}: "
                   + ", ".join(f"{n} {f:.2f}" for n, f in scale.items()))
        full = [c * scale[n] for n in studies.names() for c in planned("full", [n])]
        per_task = max(out.get("overhead_per_task_s", 0.0), 0.0)
        print(f"expected `rnnlab study all --full` ({len(full)} runs, "
              f"{sum(full) / 60:.0f} CPU min: the plans' costs {how}; "
              "an estimate, not a measurement):")
        out["full_estimate_s"] = {}
        for n in ns:
            wall = makespan(full, n) + per_task * len(full) / n
            out["full_estimate_s"][n] = wall
            print(f"  {n:4d} workers: {wall / 60:7.1f} min")
    return out


if __name__ == "__main__":
    main()
