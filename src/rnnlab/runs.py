"""Run directories: a training run on disk that survives a crash, resumes exactly, and loads back.

    runs/shakespeare-lstm-20261202-101500/
      config.json      {"task": {...}, "model": {...}, "train": TrainConfig}
      metrics.jsonl    one JSON line per step (val_* at evaluation steps)
      telemetry.jsonl  with trace_every=N: one line per traced step (rnnlab.journal)
      last.pt          every checkpoint_every steps and at the end (atomic, weights-only)
      best.pt          at the best validation loss so far
      results.json     how it ended
      tensorboard/     when tensorboard is installed
      figures/         rnnlab inspect's pictures

``train_run`` is ``train.fit`` plus callbacks that write the above; ``load_run`` rebuilds a run's
model, task and tokenizer from its checkpoint; ``inspect_run`` runs the RNN debugging checklist
(``rnnlab.probes.checklist``) on it. Nothing is written outside the run directory.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint, files, journal, losses, models
from .data import build_task
from .errors import UserError
from .train import TrainConfig, fit

# ---- configs, devices, folders -----------------------------------------------------------------


def new_config(task_name: str = "shakespeare", task_options: dict | None = None,
               model_options: dict | None = None, **train_options) -> dict:
    """A run's config (plain JSON): {"task": {...}, "model": {...}, "train": {...}}.

    Builds the task (to learn its vocabulary and sizes) and the model (to record its full
    config); the training options are ``TrainConfig``'s, checked.
    """
    train = TrainConfig.from_dict(train_options)
    task = build_task(task_name, **(task_options or {}))
    model = models.for_task(task, **(model_options or {}))
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


class _Checkpoints:
    """last.pt every ``every`` steps and at the end; best.pt at the best validation loss."""

    def __init__(self, out: Path, config: dict, tokenizer, every: int, resumed: dict | None):
        self.out, self.config, self.every = out, config, every
        self.tokenizer = tokenizer.to_dict() if tokenizer is not None else None
        self.best = float((resumed or {}).get("best_val_loss", math.inf))
        self.elapsed0 = float((resumed or {}).get("elapsed", 0.0))
        self.last_step = int(resumed["step"]) if resumed else None
        self.start = time.perf_counter()

    def save(self, trainer, name: str) -> None:
        for p in trainer.model.parameters():
            if not bool(torch.isfinite(p).all()):
                return  # never overwrite a good checkpoint with broken weights
        checkpoint.save(self.out / name, {
            **trainer.state_dict(), "config": self.config, "tokenizer": self.tokenizer,
            "elapsed": self.elapsed0 + time.perf_counter() - self.start,
            "best_val_loss": self.best})
        if name == checkpoint.LAST:
            self.last_step = trainer.step

    def on_step(self, trainer, rec: dict, last: bool) -> None:
        if "val_loss" in rec and rec["val_loss"] < self.best:
            self.best = rec["val_loss"]
            self.save(trainer, checkpoint.BEST)
        if (self.every and trainer.step % self.every == 0) or last:
            self.save(trainer, checkpoint.LAST)

    def on_end(self, trainer, history) -> None:
        if history.stopped != "non-finite" and self.last_step != trainer.step:
            self.save(trainer, checkpoint.LAST)


class _TensorBoard:
    """Scalars to out/tensorboard (only when tensorboard is installed)."""

    def __init__(self, writer):
        self.writer = writer

    def on_step(self, trainer, rec: dict, last: bool) -> None:
        for k, v in rec.items():
            if k != "step" and isinstance(v, (int, float)):
                self.writer.add_scalar(k.replace("val_", "val/"), v, trainer.step)

    def on_trace(self, trainer, record: dict) -> None:
        """Per layer (rows and steps averaged): ‖∂L/∂h_t‖ at the first and last step (and
        ‖∂L/∂c_t‖), each gate's mean and fraction saturated."""
        for name, r in record["layers"].items():
            tag = f"telemetry/{name or 'layer'}/"
            for field in ("grad_h", "grad_c"):
                if r[field] is not None:
                    self.writer.add_scalar(tag + f"{field}_first", float(r[field][:, 0].mean()),
                                           record["step"])
                    self.writer.add_scalar(tag + f"{field}_last", float(r[field][:, -1].mean()),
                                           record["step"])
            for gate, stats in r["gates"].items():
                for stat, v in stats.items():
                    self.writer.add_scalar(tag + f"{gate}_{stat}", float(v.mean()), record["step"])

    def on_end(self, trainer, history) -> None:
        self.writer.close()


def _tensorboard(out: Path, step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is an optional extra
        return None
    try:
        return _TensorBoard(SummaryWriter(str(out / "tensorboard"), purge_step=step or None))
    except Exception:
        return None


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


def train_run(out: str | os.PathLike, config: dict | None = None, *, resume: bool = False,
              steps: int | None = None, time_budget: float | None = None, device=None,
              progress: bool = True, trace_every: int | None = None) -> RunResult:
    """Train a run in directory ``out`` (new from ``config``, or ``resume``-d from its last.pt).

    Resuming continues to ``steps`` in total exactly as if the run had never stopped (same
    batches, dropout masks, optimiser state). ``trace_every`` (also on resume) sets how often
    the telemetry goes to telemetry.jsonl (``TrainConfig.trace_every``). Raises
    ``RunDiverged`` (last good checkpoint intact) when the loss or gradient turns non-finite,
    ``UserError`` for a wrong request.
    """
    out = Path(out)
    last = out / checkpoint.LAST
    if resume:
        if not out.is_dir():
            raise UserError(f"cannot resume: no run directory {out}")
        if not last.exists():
            raise UserError(f"cannot resume: no checkpoint ({checkpoint.LAST}) in {out}")
        payload = checkpoint.load(last)
        config, done = payload["config"], int(payload["step"])
        if steps is not None and steps < done:
            raise UserError(f"--steps {steps} is below the checkpoint's step {done}")
    else:
        if config is None:
            raise UserError("a new run needs a config")
        if last.exists():
            raise UserError(f"{out} already holds a run; resume it with --resume {out} "
                            "or choose another --out")
        payload, done = None, 0
    if steps is not None:
        config["train"]["steps"] = steps
    if trace_every is not None:
        config["train"]["trace_every"] = trace_every
    task, builder, tc = build_from_config(config)
    tc = tc.replace(time_budget=time_budget)
    dev = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "config.json", config, indent=2)
    if resume:
        for log in (journal.METRICS, journal.TELEMETRY):
            journal.trim(out / log, done)
        for stale in out.glob(".*.tmp"):  # a write cut short by a crash
            stale.unlink(missing_ok=True)
    ck = _Checkpoints(out, config, getattr(task, "tokenizer", None), tc.checkpoint_every,
                      payload)
    logs = [journal.MetricsLog(out / journal.METRICS), journal.TelemetryLog(
        out / journal.TELEMETRY)]
    callbacks = [*logs, ck]
    tb = _tensorboard(out, done)
    if tb is not None:
        callbacks.append(tb)
    with _Signals() as signals:
        try:
            history = fit(builder, task, tc, callbacks=[*callbacks, signals], device=dev,
                          progress=progress, resume=payload)
        finally:  # also when a crash (an exception) ends it early
            for log in logs:
                log.close()
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


# ---- loading a run back ------------------------------------------------------------------------

@dataclass
class Run:
    """A trained run back from disk: the model (eval mode), its task, config and vocabulary."""

    model: nn.Module
    task: Any            # rnnlab.data Task, or None when it cannot be rebuilt (e.g. text moved)
    config: dict
    tokenizer: Any       # the run's tokenizer (text runs) or None
    step: int
    path: Path           # the checkpoint file
    payload: dict        # everything the checkpoint holds (optimizer, rng, ...)
    task_error: str | None = None  # why ``task`` is None

    @property
    def dir(self) -> Path | None:
        """The run directory (the folder holding the checkpoint and config.json), if any."""
        return self.path.parent if (self.path.parent / "config.json").is_file() else None


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    """Load a run directory or checkpoint file: rebuild the model and task, move to ``device``."""
    from .data import CharTokenizer

    file = checkpoint.find(path)
    payload = checkpoint.load(file)
    config = payload["config"]
    model_cfg = dict(config.get("model") or {})
    name = model_cfg.pop("name", None)
    if name is None:
        raise UserError(f"{file}: the checkpoint's config names no model")
    try:
        model = models.build(name, **model_cfg)
        model.load_state_dict(payload["model"])
    except UserError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{file}: the checkpoint does not match its model "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    model.to(device).eval()

    tok = payload.get("tokenizer")
    tokenizer = CharTokenizer.from_dict(tok) if tok else None
    task, task_error = None, None
    task_cfg = dict(config.get("task") or {})
    task_name = task_cfg.pop("name", None)
    if task_name is not None:
        try:
            task = build_task(task_name, **task_cfg)
        except UserError as e:
            task_error = str(e)
    if tokenizer is None and task is not None:
        tokenizer = getattr(task, "tokenizer", None)
    return Run(model=model, task=task, config=config, tokenizer=tokenizer,
               step=int(payload["step"]), path=file, payload=payload, task_error=task_error)


def evaluate_run(run: Run, batches: int = 20) -> dict:
    """The run's validation metrics on its own fixed validation batches."""
    if run.task is None:
        raise UserError(f"cannot rebuild the run's task: {run.task_error}")
    tc = TrainConfig.from_dict(run.config["train"])
    return losses.evaluate(run.model, run.task, "val", batches, tc.batch_size,
                           generator=torch.Generator().manual_seed(tc.seed + 1))


def training_figures(run_dir: str | os.PathLike) -> dict:
    """{file name: Figure} of what a run logged while training: learning_curves.png
    (metrics.jsonl); with telemetry.jsonl, telemetry_grad_h.png (log₁₀ ‖∂L/∂h_t‖ over training
    step × time step), telemetry_grad_c.png (LSTM) and telemetry_gates.png (forget / keep gate
    over training)."""
    from . import plots

    run_dir, figs = Path(run_dir), {}
    metrics = journal.read(run_dir / journal.METRICS)
    if metrics:
        figs["learning_curves.png"] = plots.plot_learning_curves(
            metrics, title=f"learning curves: {run_dir.name}")
    tele = journal.read(run_dir / journal.TELEMETRY)
    if tele:
        figs["telemetry_grad_h.png"] = plots.plot_telemetry_heatmap(tele)
        if any(r.get("grad_c") is not None for rec in tele for r in rec["layers"].values()):
            figs["telemetry_grad_c.png"] = plots.plot_telemetry_heatmap(tele, field="grad_c")
        gates = plots.plot_gate_history(tele)
        if gates is not None:
            figs["telemetry_gates.png"] = gates
    return figs


def inspect_run(path, *, text=None, seq_len: int = 64, batch_size: int = 2, seed: int = 0,
                figures: bool = True, threshold: float = 1e-3) -> dict:
    """``rnnlab inspect``: load a run (directory or checkpoint .pt), drive its model with a
    validation batch of its task (``batch_size`` × ``seq_len``; synthetic tasks keep their own
    length) or with the first ``seq_len`` characters of the text file ``text`` (one sequence,
    through the run's tokenizer), and run ``checklist`` (with padded batches, the Jacobian,
    Lyapunov and gate probes use the full-length rows; the telemetry the whole batch; token ids
    at PAD positions count as input otherwise). Figures go to <run dir>/figures/
    (inspect_jacobian.png, inspect_spectrum.png, inspect_lyapunov.png, inspect_gates.png, and
    those of ``training_figures`` the run has), the run directory being the folder that holds
    the checkpoint and its config.json; nothing is written when there is no such folder.
    UserError for a missing path, a file that is no checkpoint, unreadable text, or a model
    without a recurrent layer.

    Returns {"checkpoint", "step", "run_dir", "input", "rows", "figures", "probes"}.
    """
    from . import plots, probes

    run = load_run(path)
    try:
        layer = probes.find_recurrent(run.model)
    except ValueError as e:
        raise UserError(f"{run.path}: {e} (attention models have no recurrence to probe)"
                        ) from None
    gen = torch.Generator().manual_seed(seed)
    if text is not None:
        from .data import load_text

        if run.tokenizer is None:
            raise UserError("--text needs a run trained on text (it has no character tokenizer)")
        ids = run.tokenizer.encode(load_text(text))[:seq_len]
        if ids.numel() < 2:
            raise UserError(f"--text {text}: need at least 2 characters, got {ids.numel()}")
        x, what = ids.unsqueeze(0), f"{ids.numel()} characters of {text}"
    else:
        if run.task is None:
            raise UserError(f"cannot rebuild the run's task ({run.task_error}); "
                            "pass --text PATH")
        batch = run.task.batch("val", batch_size, gen, seq_len=seq_len)
        x, kind = batch.x, run.task.kind
        what = f"validation batch of task {run.task.name!r}, x {tuple(x.shape)}"
        if batch.lengths is not None:  # the probes run unpadded sequences: the full-length rows
            x = x[batch.lengths == batch.lengths.max()]
            what += f" (probes on its {x.shape[0]} full-length rows)"
    x = x.to(next(run.model.parameters()).device)
    if text is not None:
        res = probes.checklist(run.model, x, threshold=threshold)
    else:
        res = probes.checklist(run.model, x, threshold=threshold, batch=batch, task_kind=kind)

    ckpt, run_dir = run.path, run.dir
    written = []
    if figures and run_dir is not None:
        fig_dir = run_dir / "figures"
        fig_dir.mkdir(exist_ok=True)
        p = res["probes"]
        state = "(h, c)" if layer.mode == "LSTM" else "h"
        series = {f"{layer.mode.lower()} state {state}": p["jacobian_batch"]}
        if p["c_path"] is not None:
            series["c path ∏f"] = p["c_path"]
        last = [s for s in p["spectral"] if s["layer"] == layer.num_layers - 1
                and s["direction"] == 0 and s["block"] == "W_hh"][0]
        figs = {
            "inspect_jacobian.png": plots.plot_jacobian_norms(
                series, theory_r=last["sigma_max"] if layer.mode == "RNN" else None,
                title=f"‖∂s_T/∂s_t‖₂, last layer (step {run.step})"),
            "inspect_spectrum.png": plots.plot_spectrum(p["spectral"]),
            "inspect_lyapunov.png": plots.plot_lyapunov({layer.mode.lower(): p["lyapunov"]}),
            "inspect_gates.png": plots.plot_gate_stats(
                p["gates"], row=(layer.num_layers - 1) * layer.num_directions),
        }
        if p["grad_h"] is not None:
            figs["inspect_grad.png"] = plots.plot_jacobian_norms(
                {"‖∂L/∂h_t‖ (telemetry)": p["grad_h"]}, ylabel="‖∂L/∂h_t‖₂ (batch mean)",
                title=f"loss gradient through time, last layer (step {run.step})")
        figs.update(training_figures(run_dir))
        for name, fig in figs.items():
            fig.savefig(fig_dir / name, dpi=110)
            written.append(fig_dir / name)
    return {"checkpoint": ckpt, "step": run.step, "run_dir": run_dir, "input": what,
            "rows": res["rows"], "figures": written, "probes": res["probes"]}
