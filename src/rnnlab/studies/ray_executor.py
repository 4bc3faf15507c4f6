"""Study runs as Ray tasks: the same specs, on this machine's Ray or on a cluster.

``RayExecutor(workers, address)`` (``rnnlab study ... --executor ray``) sends each run
(study × arm × seed) as one Ray task (one CPU, one torch thread) that calls ``execute``:

- no ``address``: a local Ray with ``workers`` CPUs (default: this machine's cores), started for
  this map and shut down after it (also on Ctrl-C: no raylet, gcs_server or worker remains);
- ``address="auto"`` or ``"ray://host:port"``: joins that cluster and disconnects after (the
  cluster goes on); ``workers``, when given, caps the tasks in flight, otherwise the cluster's
  CPUs set the pace;
- a Ray already initialised in this process (a test, a notebook) is used as it is.

A spec travels as plain data (a dict) and a result comes back to the driver, which alone writes
files: a worker needs only ``pip install rnnlab[ray]`` (the data ships in the package), no shared
file system. A task whose worker is lost is retried once by Ray (``max_retries=1``); a run that
raises is submitted once more by the driver; a second failure (of either kind) is a failed
result with the reason, and the other runs go on. (The driver, not Ray's
``retry_exceptions``, retries failed runs: ``execute`` returns a failure instead of raising, and
Ray would print a traceback on stdout for every retried exception.)
"""

from __future__ import annotations

import logging

from ..console import log
from ..errors import UserError
from .executor import Executor, RunSpec, _init_worker, default_workers, failed

INSTALL = "the ray executor needs Ray; install it with: pip install -e '.[ray]'"


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL) from None
    return ray


def run_task(fn, spec: dict) -> dict:
    """The body of one Ray task: ``fn`` (``execute``) on a spec given as plain data."""
    _init_worker()  # one torch thread (Ray also sets OMP_NUM_THREADS=1 for a 1-CPU task)
    return fn(RunSpec(**spec))


class RayExecutor(Executor):
    """Each run one Ray task (``num_cpus=1``), retried once; results in the order of the specs."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        self.ray = _ray()
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be ≥ 1, got {workers}")
        self.address = address or None
        self.asked = workers
        self.workers = workers if workers is not None or address else default_workers()
        self.cluster_cpus: int | None = None

    def describe(self) -> dict:
        return {**super().describe(), "ray_address": self.address or "local",
                "cluster_cpus": self.cluster_cpus, "ray": self.ray.__version__}

    def _start(self) -> bool:
        """Join or start Ray; True if this executor did (and must shut it down after)."""
        ray = self.ray
        if ray.is_initialized():  # this process's Ray (a test, a notebook): its CPUs
            own = False
            self.workers = self.asked
        else:
            quiet = {"include_dashboard": False, "log_to_driver": False,
                     "logging_level": logging.ERROR, "configure_logging": True}
            try:
                if self.address:
                    ray.init(address=self.address, **quiet)
                else:
                    ray.init(address="local", num_cpus=self.workers, **quiet)
            except BaseException as e:  # Ctrl-C too: a half-started local Ray is stopped
                if not self.address:
                    ray.shutdown()
                if not isinstance(e, (ConnectionError, ValueError, RuntimeError)):
                    raise
                what = f"join the Ray cluster '{self.address}'" if self.address else \
                    "start a local Ray"
                raise UserError(f"cannot {what}: {_first_line(e)}") from None
            own = True  # ray.shutdown: a local Ray stops; from a cluster, this driver disconnects
        return own

    def map(self, fn, specs, on_done=None):
        ray = self.ray
        results: list[dict | None] = [None] * len(specs)
        own = self._start()
        pending: dict = {}  # ref -> index of its spec
        retried: set[int] = set()
        cap = self.asked or len(specs)  # in flight at once
        try:
            self.cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
            self.workers = self.workers or max(1, self.cluster_cpus)
            log(f"Ray ({self.address or 'local'}): {self.cluster_cpus} CPUs, {len(specs)} tasks")
            task = ray.remote(num_cpus=1, max_retries=1)(run_task)  # max_retries: lost workers
            nxt = 0
            while nxt < len(specs) or pending:
                while nxt < len(specs) and len(pending) < cap:
                    pending[task.remote(fn, specs[nxt].to_dict())] = nxt
                    nxt += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    r, ran = self._result(ref, specs[i])
                    if ran and r.get("status") != "ok" and i not in retried:  # the run failed
                        retried.add(i)  # (a lost worker's task Ray has retried already)
                        pending[task.remote(fn, specs[i].to_dict())] = i
                        continue
                    if i in retried and r.get("status") != "ok":
                        r["error"] = f"{r.get('error')} (failed twice: retried once)"
                    results[i] = r
                    if on_done:
                        on_done(i, r)
        except BaseException:  # Ctrl-C: nothing more runs, nothing is left behind
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished, or its worker already gone
                    pass
            raise
        finally:
            if own:
                ray.shutdown()
        return results

    def _result(self, ref, spec: RunSpec) -> tuple[dict, bool]:
        """(the task's result, True), or (a failed result saying why, False) when the task
        raised or its worker was lost twice (Ray's one retry spent)."""
        ray = self.ray
        try:
            return ray.get(ref), True
        except ray.exceptions.RayTaskError as e:  # an exception outside the run (execute's own)
            cause = getattr(e, "cause", None) or e
            return failed(spec, f"{type(cause).__name__}: {_first_line(cause)}"), False
        except ray.exceptions.RayError as e:  # the worker or its node was lost
            return failed(spec, f"worker lost ({type(e).__name__}: {_first_line(e)}; "
                          "retried once)"), False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
