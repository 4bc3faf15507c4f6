"""Study runs as units, and the executors that map them to results.

A study is a list of independent runs (``RunSpec``: study × arm × seed, with the arm's settings),
each executed by the pure function ``execute(spec) -> dict``: it imports the study's module,
calls its ``run_one(spec)`` (which seeds, builds its model from its own seed and measures) and
adds the run's wall and CPU time and its status. An exception inside a run is caught and
recorded (``status: "failed"``, ``error``), so the other runs' results are kept.

An executor maps specs to results, in the order of the specs, whatever order they finish in:

    ex = executors.get("local", workers=2)
    results = ex.map(execute, specs, on_done=lambda i, result: ...)

``local`` (the default) runs them in a pool of worker processes (``spawn`` context, one torch
thread each); with ``workers=1`` it runs them one after another in this process. Runs are
deterministic and share nothing, so the results are identical whatever the number of workers
(only the timing fields differ). Another backend (a cluster) registers itself with
``register(name, factory)``, ``factory(workers=..., **options) -> Executor``; nothing in the
studies changes. ``rnnlab study --executor`` offers ``names()``, so a backend whose factory is
registered here (importing its heavy library only when called) appears on the command line.

The contract a backend relies on: a spec is plain data (it pickles and turns into JSON); a
result is a JSON-able dict that depends on the spec alone, except its timing fields, whose
names end in ``_s``; ``execute`` never raises for an error inside a run.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field

import torch

from ..errors import UserError


@dataclass
class RunSpec:
    """One run of a study: small, picklable, JSON-able."""

    study: str                      # the study's name ("forget-bias")
    arm: str                        # the arm ("bias-1")
    seed: int                       # builds the model and draws the data
    profile: str                    # quick | default | full
    settings: dict = field(default_factory=dict)  # the arm's settings (plain JSON values)
    cost: float = 1.0               # expected CPU seconds (scheduling and the ETA only)

    @property
    def key(self) -> str:
        return f"{self.study}/{self.arm}/seed-{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def study_module(study: str):
    """The module that implements a study (``forget-bias`` -> ``rnnlab.studies.forget_bias``);
    a name with a dot is a module path (a study outside rnnlab: a plugin, a test's fake)."""
    if "." in study:
        return importlib.import_module(study)
    return importlib.import_module(f"rnnlab.studies.{study.replace('-', '_')}")


def failed(spec: RunSpec, error: str, wall: float = 0.0, cpu: float = 0.0) -> dict:
    return {"study": spec.study, "arm": spec.arm, "seed": spec.seed, "status": "failed",
            "error": error, "init_fingerprint": None, "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3)}


def execute(spec: RunSpec) -> dict:
    """Run one spec with one torch thread; never raises for an error inside the run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        result = study_module(spec.study).run_one(spec)
    except Exception as e:  # recorded, so the other runs go on
        where = traceback.extract_tb(e.__traceback__)[-1]
        return failed(spec, f"{type(e).__name__}: {e} (at {os.path.basename(where.filename)}:"
                      f"{where.lineno} in {where.name})",
                      time.perf_counter() - t0, time.process_time() - c0)
    finally:
        torch.set_num_threads(threads)
    return {"study": spec.study, "arm": spec.arm, "seed": spec.seed, "status": "ok",
            **result, "wall_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3)}


# ---- executors -------------------------------------------------------------------------------

OnDone = Callable[[int, dict], None]


class Executor:
    """Maps run specs to results (same order as the specs)."""

    name = "base"
    workers = 1

    def map(self, fn: Callable[[RunSpec], dict], specs: Sequence[RunSpec],
            on_done: OnDone | None = None) -> list[dict]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}


def _init_worker() -> None:
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


class LocalExecutor(Executor):
    """A pool of ``workers`` processes on this machine (``workers=1``: this process, in turn)."""

    name = "local"

    def __init__(self, workers: int | None = None, address: str | None = None):
        if address:
            raise UserError("--address joins a Ray cluster: use it with --executor ray")
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1:
            raise UserError(f"--workers must be ≥ 1, got {self.workers}")

    def map(self, fn, specs, on_done=None):
        results: list[dict | None] = [None] * len(specs)
        if self.workers == 1 or len(specs) <= 1:
            for i, spec in enumerate(specs):
                results[i] = fn(spec)
                if on_done:
                    on_done(i, results[i])
            return results
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(min(self.workers, len(specs)), mp_context=ctx,
                                   initializer=_init_worker)
        try:
            pending = {pool.submit(fn, s): i for i, s in enumerate(specs)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    i = pending.pop(f)
                    try:
                        results[i] = f.result()
                    except BrokenProcessPool as e:
                        results[i] = failed(specs[i], f"worker process died: {e}")
                    except Exception as e:  # e.g. a result that does not pickle
                        results[i] = failed(specs[i], f"{type(e).__name__}: {e}")
                    if on_done:
                        on_done(i, results[i])
        except BaseException:  # Ctrl-C: cancel what has not started, stop the workers
            pool.shutdown(wait=False, cancel_futures=True)
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                p.terminate()
            raise
        pool.shutdown(wait=True)
        return results


def default_workers() -> int:
    """The machine's cores (those this process may use)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor}  # + "ray": __init__


def register(name: str, factory: Callable[..., Executor]) -> None:
    """Make ``--executor NAME`` available: ``factory(workers=..., **options) -> Executor``."""
    EXECUTORS[name] = factory


def names() -> list[str]:
    return list(EXECUTORS)


def get(name: str = "local", workers: int | None = None, **options) -> Executor:
    if name not in EXECUTORS:
        raise UserError(f"unknown executor '{name}'; one of: {', '.join(EXECUTORS)}")
    return EXECUTORS[name](workers=workers, **options)
