"""Run directories: a training run on disk that survives a crash, resumes exactly, and loads back.

    runs/shakespeare-lstm-20261202-101500/
      config.json      {"task": {...}, "model": {...}, "train": TrainConfig}
      metrics.jsonl    one JSON line per step (val_* at evaluation steps)
      telemetry.jsonl  with trace_every=N: one line per traced step (rnnlab.journal)
      last.pt          every checkpoint_every steps and at the end (atomic, weights-only)
      best.pt          at the best validation loss so far
      results.json     how it ended
      tensorboard/     when tensorboard is installed
      .lock            while a process writes the run (its pid and host)
      figures/         rnnlab inspect's pictures

``train_run`` is ``train.fit`` plus the callbacks of ``rnnlab.rundir`` that write the above,
under the run directory's lock, after checking that the run fits in memory. ``load_run``,
``evaluate_run``, ``score_text`` and ``inspect_run`` (``rnnlab.runload``, re-exported here)
bring a run back. Nothing is written outside the run directory.
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import checkpoint, console, files, journal, models, rundir, sizing
from .data import build_task
from .errors import UserError
from .runload import (  # the loading half, re-exported
    MAX_UNSEEN,
    Run,
    evaluate_run,
    inspect_run,
    load_run,
    score_text,
)
from .train import TrainConfig, fit

__all__ = ["MAX_UNSEEN", "Run", "RunDiverged", "RunResult", "build_from_config", "evaluate_run",
           "inspect_run", "load_run", "new_config", "new_run_dir", "resolve_device",
           "score_text", "train_run"]

# ---- configs, devices, folders -----------------------------------------------------------------


def new_config(task_name: str = "shakespeare", task_options: dict | None = None,
               model_options: dict | None = None, **train_options) -> dict:
    """A run's config (plain JSON): {"task": {...}, "model": {...}, "train": {...}}.

    Builds the task (to learn its vocabulary and sizes) and the model on the meta device (to
    record its full config without allocating it: ``train_run`` checks it fits first); the
    training options are ``TrainConfig``'s, checked.
    """
    train = TrainConfig.from_dict(train_options)
    task = build_task(task_name, **(task_options or {}))
    model = sizing.meta_model(models.for_task, task=task, **(model_options or {}))
    return {"task": {"name": task.name, **task.config()}, "model": dict(model.config),
            "train": train.to_dict()}


def build_from_config(config: dict):
    """(task, builder, TrainConfig) of a run config; ``builder()`` builds the model (fit calls
    it after seeding with the run's seed)."""
    task_cfg = dict(config["task"])
    task = build_task(task_cfg.pop("name"), **task_cfg)
    model_cfg = dict(config["model"])
    name = model_cfg.pop("name")
    return task, (lambda: models.build(name, **model_cfg)), TrainConfig.from_dict(config["train"])


def resolve_device(device: str | None) -> torch.device:
    """"auto" (CUDA if available) / "cpu" / "cuda[:i]"; UserError when it is not available."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {device!r} (use auto, cpu or cuda)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} is not available: no CUDA GPU found")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} is not available "
                            f"({torch.cuda.device_count()} CUDA device(s))")
    elif dev.type != "cpu":
        raise UserError(f"unsupported device {device!r} (use auto, cpu or cuda)")
    return dev


def new_run_dir(name: str, root: str | os.PathLike = "runs") -> Path:
    """root/<name>-YYYYmmdd-HHMMSS, made unique with a suffix if it exists (not created)."""
    base = Path(root) / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


# ---- training a run ----------------------------------------------------------------------------

class RunDiverged(Exception):
    """The loss or gradient turned non-finite; ``checkpoint`` is the last good one (or None)."""

    def __init__(self, step: int, what: str, checkpoint_path: Path | None,
                 checkpoint_step: int | None):
        self.step, self.what = step, what
        self.checkpoint, self.checkpoint_step = checkpoint_path, checkpoint_step
        where = (f"last good checkpoint: {checkpoint_path} (step {checkpoint_step})"
                 if checkpoint_path else "no checkpoint was written before it")
        super().__init__(f"training stopped: non-finite {what} at step {step}; {where}")


@dataclass
class RunResult:
    out: Path
    step: int
    stopped: str            # "steps" | "target" | "time" | "interrupted"
    final: dict             # the last validation metrics
    checkpoint: Path
    signal: int | None = None  # the signal that interrupted it (SIGINT, SIGTERM, SIGHUP)


class _Signals:
    """Ctrl-C, SIGTERM, SIGHUP: finish the step, evaluate, checkpoint, stop. A second Ctrl-C
    interrupts at once."""

    SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None),
                                getattr(signal, "SIGHUP", None)) if s is not None)

    def __init__(self):
        self.received: int | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def wants_stop(self) -> bool:
        return self.received is not None

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False


def _differences(a, b, prefix: str = "") -> list[str]:
    """Where two JSON configs differ: ["model.hidden_size (256 vs 16)", ...]."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]} ({a!r} vs {b!r})"]


def _check_belongs(out: Path, payload: dict, task) -> None:
    """--resume: the checkpoint must be this run's (config, weights' shapes, vocabulary)."""
    last = out / checkpoint.LAST
    config = json.loads(files.dumps(payload["config"]))
    stored_path = out / "config.json"
    if stored_path.exists():
        try:
            stored = json.loads(stored_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot resume: {stored_path} is unreadable "
                            f"({type(e).__name__}); nothing was changed") from None
        diffs = [d for d in _differences(stored, config)  # what a resume may change
                 if not d.startswith(("train.steps ", "train.trace_every "))]
        if diffs:
            raise UserError(f"cannot resume: {last} does not belong to the run in {out}: its "
                            f"config differs from config.json in {'; '.join(diffs[:3])}"
                            f"{' and more' if len(diffs) > 3 else ''} (config.json vs "
                            "checkpoint); nothing was changed")
        config = stored
    model_cfg = dict(config["model"])
    expected = {k: tuple(v.shape) for k, v in
                sizing.meta_model(models.build, **model_cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in payload["model"].items()
           if isinstance(v, torch.Tensor)}
    if expected != got:
        bad = sorted(set(expected) ^ set(got)) or \
            [f"{k} {got[k]} vs {expected[k]}" for k in expected if expected[k] != got[k]]
        raise UserError(f"cannot resume: the weights in {last} do not fit the run's model "
                        f"({', '.join(map(str, bad[:3]))}); nothing was changed")
    tok, mine = payload.get("tokenizer"), getattr(task, "tokenizer", None)
    if tok is not None and mine is not None and mine.to_dict() != tok:
        raise UserError(f"cannot resume: the run's text ({config['task'].get('path', 'corpus')})"
                        " has changed since it started (its vocabulary differs from the "
                        "checkpoint's); nothing was changed")


def _fits(task, config: dict, tc: TrainConfig, dev: torch.device) -> None:
    """UserError, before anything is allocated, when the model and a batch cannot fit."""
    b = task.batch("train", 1, torch.Generator().manual_seed(tc.seed))
    T = max(b.x.shape[1], b.y.shape[1] if b.y.dim() > 1 else 0)
    meta = sizing.meta_model(models.build, **config["model"])
    need = sizing.estimate(meta, tc.batch_size, T, optimizer=tc.optimizer,
                           per_step_outputs=task.kind in ("lm", "tagging", "seq2seq"),
                           dtype=torch.float64 if getattr(tc, "dtype", None) == "float64"
                           else torch.float32)
    sizing.check(need, dev, f"training this model (batch {tc.batch_size} × {T} steps)",
                 "use a smaller --hidden-size, --num-layers, --batch-size or --seq-len")


def _write_failed(e: OSError, out: Path, ck) -> UserError:
    where = e.filename or out
    last = ck.last_step if ck is not None else None
    if last is None and (out / checkpoint.LAST).exists():
        last = checkpoint.load(out / checkpoint.LAST)["step"]
    fix = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that"
    state = (f"the last checkpoint ({out / checkpoint.LAST}, step {last}) and everything "
             f"written before are intact: {fix}, then continue with --resume {out}"
             if last is not None else "no checkpoint was written yet")
    return UserError(f"cannot write {where}: {files.why(e)}; {state}")


def train_run(out: str | os.PathLike, config: dict | None = None, *, resume: bool = False,
              steps: int | None = None, time_budget: float | None = None, device=None,
              progress: bool = True, trace_every: int | None = None) -> RunResult:
    """Train a run in directory ``out`` (new from ``config``, or ``resume``-d from its last.pt).

    Resuming continues to ``steps`` in total exactly as if the run had never stopped (same
    batches, dropout masks, optimiser state); config.json stays as the run was created (the
    checkpoint and results.json carry a new total of steps). One process writes a run at a
    time (``rundir.RunLock``). Raises ``RunDiverged`` (last good checkpoint intact) when the
    loss or gradient turns non-finite, ``UserError`` for a wrong request, a run that does not
    fit in memory, a checkpoint that is not the run's, or a write the disk refused.
    ``trace_every`` (also on resume) sets how often the telemetry goes to telemetry.jsonl
    (``TrainConfig.trace_every``).
    """
    out = Path(out)
    dev = resolve_device(device)
    if resume and not out.is_dir():
        raise UserError(f"cannot resume: no run directory {out}")
    created = not out.exists()
    if not resume:
        if config is None:
            raise UserError("a new run needs a config")
        rundir.make_dir(out)
    try:
        with _Signals() as signals, rundir.RunLock(out):
            made: dict = {}  # what _train_locked has set up so far (its checkpoint writer)
            try:
                return _train_locked(out, config, resume, steps, time_budget, trace_every,
                                     dev, progress, signals, made)
            except OSError as e:
                raise _write_failed(e, out, made.get("checkpoints")) from None
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folder
            try:
                out.rmdir()
            except OSError:
                pass
        raise


def _train_locked(out, config, resume, steps, time_budget, trace_every, dev, progress, signals,
                  made):
    last = out / checkpoint.LAST
    metrics_path = out / rundir.METRICS
    if resume:
        if not last.exists():
            raise UserError(f"cannot resume: no checkpoint ({checkpoint.LAST}) in {out}")
        payload = checkpoint.load(last)
        config, done = payload["config"], int(payload["step"])
        if steps is not None and steps < done:
            raise UserError(f"--steps {steps} is below the checkpoint's step {done}")
    else:
        rundir.check_fresh(out)
        payload, done = None, 0
    if steps is not None:
        config["train"]["steps"] = steps
    if trace_every is not None:
        config["train"]["trace_every"] = trace_every
    task, builder, tc = build_from_config(config)
    tc = tc.replace(time_budget=time_budget)
    if resume:
        _check_belongs(out, payload, task)
    _fits(task, config, tc, dev)
    if resume:
        for log in (metrics_path, out / journal.TELEMETRY):
            note = rundir.set_aside_metrics(log, done)
            if note:
                console.log(note)
        for stale in out.glob(".*.tmp"):  # a write cut short by a crash
            stale.unlink(missing_ok=True)
    if not resume or not (out / "config.json").exists():
        files.write_json(out / "config.json", config, indent=2)
    ck = rundir.Checkpoints(out, config, getattr(task, "tokenizer", None), tc.checkpoint_every,
                            payload)
    made["checkpoints"] = ck
    metrics, telemetry = rundir.Metrics(metrics_path), journal.TelemetryLog(out / journal.TELEMETRY)
    callbacks = [metrics, telemetry, ck]
    tb = rundir.tensorboard(out, done)
    if tb is not None:
        callbacks.append(tb)
    try:
        history = fit(builder, task, tc, callbacks=[*callbacks, signals], device=dev,
                      progress=progress, resume=payload)
    finally:  # also when a crash (an exception) ends it early
        metrics.close()
        telemetry.close()
    if history.stopped == "non-finite":
        nf = history.nonfinite
        raise RunDiverged(nf["step"], nf["what"], last if ck.last_step is not None else None,
                          ck.last_step)
    step = history.records[-1]["step"] if history.records else done
    final = history.final
    results = {"step": step, "steps": tc.steps, "stopped": history.stopped,
               "final": {k: v for k, v in final.items() if not isinstance(v, dict)},
               "best_val_loss": ck.best if math.isfinite(ck.best) else None,
               "wall_time_s": ck.elapsed0 + history.wall_time_s}
    files.write_json(out / "results.json", results, indent=2)
    return RunResult(out=out, step=step, stopped=history.stopped, final=final, checkpoint=last,
                     signal=signals.received)
