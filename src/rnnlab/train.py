"""The training loop: one readable function, plus a run-directory layer on top.

Two entry points:

- ``fit(model, task, steps=...)`` trains in memory and returns a ``History`` (used by the
  studies and by you in a notebook);
- ``train_run(config, out)`` builds the task and model from a plain config dict, trains with
  checkpoints, ``metrics.jsonl``, a progress bar and (if installed) TensorBoard events, and can
  resume a stopped run exactly (used by ``rnnlab train``).

One optimisation step (``Trainer.train_step``)::

    batch      = task.batch("train", B, generator, T)          # or the next chunk of task.stream
    loss       = L(model(batch.x), batch.y)                    # per task kind, see below
    g          = ∇θ loss                                       # BPTT through the chunk
    ‖g‖        = sqrt(Σ_p ‖g_p‖²)                              # logged *before* clipping
    g          ← g · min(1, clip / ‖g‖)                        # clipping by global norm
    θ          ← optimizer(θ, g, lr(step))                     # Adam / AdamW / SGD

Loss by task kind (``Task.kind``):

- "lm", "tagging": masked cross-entropy  L = Σ_{b,t} m_bt · (−log p(y_bt)) / Σ m_bt  over
  ``Batch.mask``; metrics: accuracy, and over ``Batch.dep_mask`` the dependency accuracy
  (and by dependency distance);
- "classify": cross-entropy of the class, accuracy;
- "regress": mean squared error  L = mean (ŷ − y)²; "acc" is the fraction with |ŷ − y| < 0.04
  (the adding problem's criterion, Hochreiter & Schmidhuber 1997);
- "seq2seq": masked cross-entropy over the target tokens with teacher forcing, token accuracy;
  at evaluation also the greedy-decoding sequence accuracy ("seq_acc").

Learning rate (``lr_at``): linear warmup  lr·(s+1)/W  for the first W steps, then either
constant or cosine decay  lr·(m + (1−m)·½(1 + cos(π·p))),  p = progress in [0, 1], m = 0.1.

Truncated BPTT: ``tbptt="random"`` draws independent random windows; ``"stateful"`` walks
the text as B parallel contiguous streams (``task.stream``), carrying the recurrent state from one
chunk to the next but detaching it (h ← h.detach()), so gradients flow back at most T steps.

Seeds: ``seed`` seeds torch (CPU and CUDA: dropout), python ``random``, numpy and the data
generator; all of their states go into every checkpoint so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint
from .data import masked_mean
from .errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd")
DECAYS = ("cosine", "none")
TBPTT = ("random", "stateful")
KINDS = ("lm", "tagging", "classify", "regress", "seq2seq")
MIN_LR_RATIO = 0.1      # cosine decays to 10 % of the base learning rate
REGRESS_TOLERANCE = 0.04  # |ŷ − y| below this counts as correct (adding problem)
LOWER_IS_BETTER = ("loss", "mse", "bpc", "ppl")


class NonFiniteError(Exception):
    """The loss or the gradient norm became NaN/Inf at ``step`` (the update was not applied)."""

    def __init__(self, step: int, what: str, value: float):
        self.step, self.what, self.value = step, what, value
        super().__init__(f"non-finite {what} ({value}) at step {step}")


# ---- learning rate and optimiser ---------------------------------------------------------------

def lr_at(step: int, lr: float, warmup: int = 0, decay: str | None = "cosine",
          total: int = 1) -> float:
    """Learning rate for the update made at 0-based step ``step`` (warmup, then decay)."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup  # linear warmup: lr·(s+1)/W
    if decay in (None, "none") or total <= warmup:
        return lr
    p = min(1.0, (step - warmup) / max(1, total - warmup))  # progress through the decay
    return lr * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0):
    """Adam (L2 added to the gradient), AdamW (decoupled weight decay) or plain SGD."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")


# ---- loss and metrics by task kind -------------------------------------------------------------

def _forward(model: nn.Module, kind: str, batch, state=None):
    """Run the model on a batch: (output, new recurrent state or None)."""
    if kind in ("lm", "tagging"):
        out = model(batch.x, state) if state is not None else model(batch.x)
        if isinstance(out, tuple):
            return out[0], out[1]
        return out, None
    if kind in ("classify", "regress"):
        return model(batch.x, lengths=batch.lengths), None
    if kind == "seq2seq":
        return model(batch.x, batch.lengths, batch.y_in), None
    raise UserError(f"unknown task kind {kind!r} (choose from {', '.join(KINDS)})")


def _tally(kind: str, out: Tensor, batch) -> tuple[Tensor, dict]:
    """The loss to minimise and summable counts for the metrics of one batch."""
    if kind in ("lm", "tagging", "seq2seq"):
        logits, y = out, batch.y                                     # (B, T, V), (B, T)
        mask = batch.mask if batch.mask is not None else torch.ones_like(y, dtype=torch.bool)
        mask = mask.to(logits.device)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(),
                              reduction="none").view_as(y)              # −log p(y_bt)
        m = mask.to(nll.dtype)
        n = m.sum()
        loss = masked_mean(nll, mask)                                    # Σ m·ℓ / Σ m
        correct = (logits.argmax(-1) == y) & mask
        t = {"loss_sum": float((nll.detach() * m).sum()), "n": float(n),
             "correct": float(correct.sum())}
        dep = getattr(batch, "dep_mask", None)
        if dep is not None:
            dep = dep.to(mask.device) & mask
            t["dep_n"] = float(dep.sum())
            t["dep_correct"] = float((correct & dep).sum())
            dist = getattr(batch, "distance", None)
            if dist is not None:
                by = {}
                for d in torch.unique(dist[dep]).tolist():
                    sel = dep & (dist.to(dep.device) == d)
                    by[int(d)] = [float((correct & sel).sum()), float(sel.sum())]
                t["by_distance"] = by
        return loss, t
    if kind == "classify":
        loss = F.cross_entropy(out.float(), batch.y)
        B = batch.y.numel()
        return loss, {"loss_sum": float(loss.detach()) * B, "n": float(B),
                      "correct": float((out.argmax(-1) == batch.y).sum())}
    if kind == "regress":
        pred, y = out.reshape(-1).float(), batch.y.reshape(-1).float()
        se = (pred - y) ** 2                                            # (ŷ − y)²
        loss = se.mean()
        return loss, {"loss_sum": float(se.detach().sum()), "n": float(y.numel()),
                      "correct": float(((pred - y).abs() < REGRESS_TOLERANCE).sum())}
    raise UserError(f"unknown task kind {kind!r} (choose from {', '.join(KINDS)})")


def _merge(total: dict, t: dict) -> None:
    for k, v in t.items():
        if k == "by_distance":
            by = total.setdefault("by_distance", {})
            for d, (c, n) in v.items():
                prev = by.get(d, [0.0, 0.0])
                by[d] = [prev[0] + c, prev[1] + n]
        else:
            total[k] = total.get(k, 0.0) + v


def _metrics(kind: str, t: dict) -> dict:
    """Means from summed counts: loss, acc (+ bpc/ppl for lm, mse, dep_acc, seq_acc)."""
    n = max(t.get("n", 0.0), 1.0)
    m = {"loss": t.get("loss_sum", 0.0) / n, "acc": t.get("correct", 0.0) / n}
    if kind == "lm":
        m["bpc"] = m["loss"] / math.log(2)                 # bits per token = nats / ln 2
        m["ppl"] = math.exp(min(m["loss"], 700.0))         # perplexity = e^nats
    if kind == "regress":
        m["mse"] = m["loss"]
    if "dep_n" in t:
        m["dep_acc"] = t["dep_correct"] / t["dep_n"] if t["dep_n"] else float("nan")
        if "by_distance" in t:
            m["dep_acc_by_distance"] = {d: c / k for d, (c, k) in sorted(t["by_distance"].items())
                                        if k}
    if "seq_n" in t:
        m["seq_acc"] = t["seq_correct"] / max(t["seq_n"], 1.0)
    return m


def loss_and_metrics(model: nn.Module, task_kind: str, batch) -> tuple[Tensor, dict]:
    """The loss (a differentiable scalar) and a dict of float metrics for one batch."""
    out, _ = _forward(model, task_kind, batch)
    loss, t = _tally(task_kind, out, batch)
    return loss, _metrics(task_kind, t)


def _greedy_tally(model: nn.Module, task, batch) -> dict:
    """Sequence accuracy of greedy decoding: every target token up to and including EOS right."""
    y = batch.y                                                         # (B, T_out)
    mask = batch.mask if batch.mask is not None else torch.ones_like(y, dtype=torch.bool)
    tokens, _ = model.greedy(batch.x, batch.lengths, y.shape[1], task.bos_id, task.eos_id)
    L = tokens.shape[1]
    if L < y.shape[1]:  # decoding stopped early everywhere: pad with an impossible id
        tokens = F.pad(tokens, (0, y.shape[1] - L), value=-1)
    ok = ((tokens[:, : y.shape[1]] == y) | ~mask).all(dim=1)
    return {"seq_correct": float(ok.sum()), "seq_n": float(y.shape[0])}


@torch.no_grad()
def evaluate(model: nn.Module, task, split: str = "val", batches: int = 10,
             batch_size: int = 32, seq_len: int | None = None,
             generator: torch.Generator | None = None) -> dict:
    """Average metrics over ``batches`` random batches of ``split`` (model in eval mode).

    Returns "loss", "acc" and, where they apply, "bpc"/"ppl" (lm), "mse" (regress),
    "dep_acc" and "dep_acc_by_distance" {d: acc} (tasks with a dep_mask), "seq_acc" (seq2seq).
    Without a generator the same fixed batches are drawn every call (seed 0), so evaluations
    during training are comparable and do not disturb the training random streams.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    total: dict = {}
    try:
        for _ in range(batches):
            batch = task.batch(split, batch_size, generator, seq_len).to(device)
            out, _ = _forward(model, task.kind, batch)
            _merge(total, _tally(task.kind, out, batch)[1])
            if task.kind == "seq2seq" and hasattr(model, "greedy"):
                _merge(total, _greedy_tally(model, task, batch))
    finally:
        model.train(was_training)
    return _metrics(task.kind, total)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ---- random states -----------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed torch (CPU and all CUDA devices), python ``random`` and numpy."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random state as plain data (tensors, ints, lists) for a weights-only checkpoint."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None}
    if generator is not None:
        state["data"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
    if generator is not None and state.get("data") is not None:
        generator.set_state(state["data"])


# ---- the loop ----------------------------------------------------------------------------------

@dataclass
class History:
    """What ``fit`` did: one record per step, plus how and when it stopped."""

    records: list = field(default_factory=list)   # {"step","loss","acc","grad_norm","lr","time",
    #                                                 and at eval steps "val_loss","val_acc",...}
    steps_to_target: int | None = None            # first eval step that reached the target
    final: dict = field(default_factory=dict)     # the last evaluation's metrics
    wall_time_s: float = 0.0
    stopped: str = "steps"                        # "steps" | "target" | "time" | "non-finite"
    nonfinite: dict | None = None                 # {"step", "what", "value"} when it diverged

    @property
    def evals(self) -> list:
        """The records that carry validation metrics."""
        return [r for r in self.records if "val_loss" in r]


def _detach(state):
    """h ← h.detach() for a tensor or a (nested) tuple/list of tensors."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(_detach(s) for s in state)


def _to_device(state, device):
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.to(device)
    return type(state)(_to_device(s, device) for s in state)


class Trainer:
    """The state of one training run and its step; ``fit`` and ``train_run`` drive it.

    Holds the model, optimiser, data generator, the stream position and carried recurrent
    state (stateful TBPTT) and the step count; ``state_dict``/``load_state_dict`` round-trip all
    of it (plus every random state) so a run resumed from a checkpoint continues exactly.
    """

    def __init__(self, model: nn.Module, task, *, steps: int, batch_size: int = 32,
                 seq_len: int | None = None, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, clip: float | None = 1.0, warmup: int = 0,
                 decay: str | None = "cosine", tbptt: str = "random", eval_every: int = 100,
                 eval_batches: int = 10, seed: int = 0, device=None):
        if tbptt not in TBPTT:
            raise UserError(f"unknown tbptt mode {tbptt!r} (choose from {', '.join(TBPTT)})")
        if decay not in (None, *DECAYS):
            raise UserError(f"unknown decay {decay!r} (choose from {', '.join(DECAYS)})")
        if tbptt == "stateful" and task.kind != "lm":
            tbptt = "random"  # only language modelling has one long stream to walk
        for name, v in (("steps", steps), ("batch_size", batch_size)):
            if not isinstance(v, int) or v < (0 if name == "steps" else 1):
                raise UserError(f"{name} must be a positive integer, got {v!r}")
        if lr <= 0 or not math.isfinite(lr):
            raise UserError(f"learning rate must be a positive number, got {lr}")
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.model = model.to(self.device)
        self.task = task
        self.steps, self.batch_size, self.seq_len = steps, batch_size, seq_len
        self.lr, self.warmup, self.decay = lr, warmup, decay
        self.clip = clip if clip else None
        self.tbptt, self.eval_every, self.eval_batches = tbptt, eval_every, eval_batches
        self.seed = seed
        self.optimizer = make_optimizer(model.parameters(), optimizer, lr, weight_decay)
        self.generator = torch.Generator().manual_seed(seed)   # the data's random stream
        self.step = 0                 # updates done so far
        self.state = None             # carried recurrent state (stateful TBPTT)
        self.chunks = 0               # chunks of the current pass over the stream consumed
        self._stream: Iterator | None = None

    # -- data --
    def next_batch(self):
        if self.tbptt == "random":
            return self.task.batch("train", self.batch_size, self.generator, self.seq_len)
        if self._stream is None:
            self._stream = self.task.stream("train", self.batch_size, self.seq_len)
            for _ in range(self.chunks):  # resumed mid-pass: skip what was already used
                next(self._stream)
        try:
            batch = next(self._stream)
        except StopIteration:  # one pass over the text done: start again from fresh state
            self._stream = self.task.stream("train", self.batch_size, self.seq_len)
            self.chunks, self.state = 0, None
            batch = next(self._stream)
        self.chunks += 1
        return batch

    # -- one update --
    def train_step(self) -> dict:
        """One optimisation step; raises ``NonFiniteError`` (without updating) on NaN/Inf."""
        model, kind = self.model, self.task.kind
        model.train()
        lr = lr_at(self.step, self.lr, self.warmup, self.decay, self.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.next_batch().to(self.device)
        out, state = _forward(model, kind, batch, self.state)
        loss, t = _tally(kind, out, batch)
        step = self.step + 1
        if not math.isfinite(float(loss.detach())):
            raise NonFiniteError(step, "loss", float(loss.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        # ‖g‖ = sqrt(Σ ‖g_p‖²), measured before clipping; clipping scales g by min(1, c/‖g‖)
        max_norm = self.clip if self.clip else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        if not math.isfinite(norm):
            raise NonFiniteError(step, "gradient norm", norm)
        self.optimizer.step()
        if self.tbptt == "stateful":
            self.state = _detach(state)  # carry h across chunks, but not its gradient path
        self.step = step
        m = _metrics(kind, t)
        rec = {"step": step, "loss": m["loss"], "acc": m["acc"], "grad_norm": norm, "lr": lr}
        if "dep_acc" in m:
            rec["dep_acc"] = m["dep_acc"]
        return rec

    def evaluate(self) -> dict:
        return evaluate(self.model, self.task, "val", self.eval_batches, self.batch_size,
                        self.seq_len, torch.Generator().manual_seed(self.seed + 1))

    # -- checkpoint round trip --
    def state_dict(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": {"lr": self.lr, "warmup": self.warmup, "decay": self.decay or "none",
                             "total": self.steps},
                "rng": rng_state(self.generator),
                "stream": {"chunks": self.chunks, "state": _to_device(self.state, "cpu")}}

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.step = int(sd["step"])
        stream = sd.get("stream") or {}
        self.chunks = int(stream.get("chunks", 0))
        self.state = _to_device(stream.get("state"), self.device)
        self._stream = None
        set_rng_state(sd["rng"], self.generator)


def _reached(metrics: dict, metric: str, target: float) -> bool:
    v = metrics.get(metric)
    if v is None or not math.isfinite(v):
        return False
    return v <= target if metric in LOWER_IS_BETTER else v >= target


def _eval_record(m: dict) -> dict:
    return {f"val_{k}": v for k, v in m.items() if not isinstance(v, dict)}


def fit(model: nn.Module, task, *, steps: int, batch_size: int = 32, seq_len: int | None = None,
        optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
        clip: float | None = 1.0, warmup: int = 0, decay: str | None = "cosine",
        tbptt: str = "random", eval_every: int = 100, eval_batches: int = 10,
        target: float | None = None, target_metric: str = "acc",
        time_budget: float | None = None, seed: int = 0, device=None, progress: bool = False,
        callback: Callable[[dict], Any] | None = None, on_nonfinite: str = "stop") -> History:
    """Train ``model`` on ``task`` in memory for ``steps`` updates; return the ``History``.

    Evaluates on "val" every ``eval_every`` steps and at the end; stops early when the
    validation ``target_metric`` (e.g. "acc", "dep_acc", "loss", "mse") reaches ``target``, or
    when ``time_budget`` seconds have passed. ``callback(record)`` is called after every step
    (return False to stop). When the loss or gradient turns non-finite the update is skipped
    and training stops: ``history.stopped == "non-finite"`` (``on_nonfinite="raise"`` raises
    ``NonFiniteError`` instead).
    """
    seed_everything(seed)
    trainer = Trainer(model, task, steps=steps, batch_size=batch_size, seq_len=seq_len,
                      optimizer=optimizer, lr=lr, weight_decay=weight_decay, clip=clip,
                      warmup=warmup, decay=decay, tbptt=tbptt, eval_every=eval_every,
                      eval_batches=eval_batches, seed=seed, device=device)
    history = History()
    bar = _Progress(steps, task.kind, enabled=progress)
    start = time.perf_counter()
    with bar:
        while trainer.step < steps:
            try:
                rec = trainer.train_step()
            except NonFiniteError as e:
                if on_nonfinite == "raise":
                    raise
                history.stopped = "non-finite"
                history.nonfinite = {"step": e.step, "what": e.what, "value": e.value}
                break
            rec["time"] = time.perf_counter() - start
            done = trainer.step >= steps
            out_of_time = time_budget is not None and rec["time"] >= time_budget
            if (eval_every and trainer.step % eval_every == 0) or done or out_of_time:
                m = trainer.evaluate()
                rec.update(_eval_record(m))
                history.final = m
                if target is not None and history.steps_to_target is None \
                        and _reached(m, target_metric, target):
                    history.steps_to_target = trainer.step
                    history.stopped = "target"
            history.records.append(rec)
            bar.update(rec)
            if callback is not None and callback(rec) is False:
                history.stopped = "callback"
                break
            if history.stopped == "target":
                break
            if out_of_time and not done:
                history.stopped = "time"
                break
    history.wall_time_s = time.perf_counter() - start
    return history


# ---- progress bar ------------------------------------------------------------------------------

class _Progress:
    """A rich progress bar on stderr: step, loss, bits per char or accuracy, speed."""

    def __init__(self, total: int, kind: str, enabled: bool = True, start: int = 0,
                 description: str = "train"):
        self.enabled, self.kind = enabled, kind
        self.total, self.start, self.description = total, start, description
        self._last = time.perf_counter()
        self._dt: float | None = None  # moving average of seconds per step

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                                 MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
            self._bar.__enter__()
            self._id = self._bar.add_task(self.description, total=self.total,
                                          completed=self.start, stats="")
        return self

    def update(self, rec: dict) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        self._dt = dt if self._dt is None else 0.9 * self._dt + 0.1 * dt
        if self.kind == "lm":
            stats = f"loss {rec['loss']:.3f}  {rec['loss'] / math.log(2):.3f} bpc"
        elif self.kind == "regress":
            stats = f"mse {rec['loss']:.4f}"
        else:
            stats = f"loss {rec['loss']:.3f}  acc {rec['acc']:.3f}"
        if "val_loss" in rec:
            v = rec["val_loss"]
            stats += (f"  val {v / math.log(2):.3f} bpc" if self.kind == "lm"
                      else f"  val acc {rec.get('val_acc', float('nan')):.3f}")
        stats += f"  {1.0 / self._dt:.2f} step/s" if self._dt else ""
        self._bar.update(self._id, completed=rec["step"], stats=stats)

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)
        return False


# ---- text: sampling and scoring ----------------------------------------------------------------

def _lm_step(model: nn.Module, ids: Tensor, state):
    """Logits for the last position of ids (1, T) and the new state."""
    out = model(ids, state) if state is not None else model(ids)
    logits, state = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
    return logits[0, -1], state


@torch.no_grad()
def sample(model: nn.Module, tokenizer, prime: str = "", length: int = 500,
           temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> str:
    """Generate ``length`` characters after ``prime`` (returned without the prime).

    Each next id ~ softmax(logits / temperature) restricted to the ``top_k`` largest logits;
    temperature 0 takes the argmax (greedy). Recurrent models carry their state from step to
    step; an attention model re-reads its context window (up to its max_len) every step.
    """
    if temperature < 0:
        raise UserError(f"temperature must be ≥ 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise UserError(f"top-k must be ≥ 1, got {top_k}")
    model.eval()
    device = _model_device(model)
    ids = tokenizer.encode(prime) if prime else tokenizer.encode("\n")
    if ids.numel() == 0:
        ids = torch.zeros(1, dtype=torch.long)
    ids = ids.to(device).view(1, -1)
    max_len = (getattr(model, "config", None) or {}).get("max_len") or 1024
    context = ids
    logits, state = _lm_step(model, ids, None)
    recurrent = state is not None
    out = []
    for _ in range(length):
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            z = logits.float().cpu() / temperature                     # logits / T
            if top_k is not None and top_k < z.numel():
                kth = torch.topk(z, top_k).values[-1]
                z = z.masked_fill(z < kth, float("-inf"))             # keep the k largest
            nxt = int(torch.multinomial(torch.softmax(z, -1), 1, generator=generator))
        out.append(nxt)
        step = torch.tensor([[nxt]], device=device)
        if recurrent:
            logits, state = _lm_step(model, step, state)
        else:
            context = torch.cat([context, step], 1)[:, -max_len:]
            logits, _ = _lm_step(model, context, None)
    return tokenizer.decode(torch.tensor(out, dtype=torch.long))


@torch.no_grad()
def evaluate_text(model: nn.Module, tokenizer, text: str, seq_len: int = 256,
                  streams: int = 16) -> dict:
    """Score every character of ``text`` after the first: nats and bits per char, perplexity.

    Characters the tokenizer never saw are skipped (rnnlab.data's policy for evaluation text).
    The text is cut into ``streams`` contiguous segments read in parallel (each one token
    longer on the left so no target is skipped); a recurrent model carries its state from one
    chunk of ``seq_len`` to the next, an attention model sees each chunk on its own.
    nats = −(1/N) Σ log p(c_t | c_<t);  bits = nats / ln 2;  perplexity = e^nats.
    """
    try:
        ids = tokenizer.encode(text, unknown="skip").long()  # unseen characters are dropped
    except TypeError:  # a tokenizer without an unseen-character policy
        ids = tokenizer.encode(text).long()
    N = ids.numel() - 1                              # number of predicted characters
    if N < 1:
        raise UserError("the text is too short to score (it needs at least 2 characters)")
    model.eval()
    device = _model_device(model)
    max_len = (getattr(model, "config", None) or {}).get("max_len")
    if max_len:
        seq_len = min(seq_len, int(max_len))
    S = max(1, min(streams, N // max(seq_len, 1)))
    bounds = [round(i * N / S) for i in range(S + 1)]   # targets 1..N split into S segments
    L = max(bounds[i + 1] - bounds[i] for i in range(S))
    x = torch.zeros(S, L, dtype=torch.long)
    y = torch.zeros(S, L, dtype=torch.long)
    m = torch.zeros(S, L, dtype=torch.bool)
    for i in range(S):
        a, b = bounds[i], bounds[i + 1]               # inputs ids[a:b], targets ids[a+1:b+1]
        x[i, : b - a], y[i, : b - a], m[i, : b - a] = ids[a:b], ids[a + 1: b + 1], True
    total, state = 0.0, None
    for t0 in range(0, L, seq_len):
        xb = x[:, t0: t0 + seq_len].to(device)
        out = model(xb, state) if state is not None else model(xb)
        logits, state = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y[:, t0: t0 + seq_len].flatten()
                              .to(device), reduction="none")
        total += float((nll * m[:, t0: t0 + seq_len].flatten().to(device)).sum())
    nats = total / N
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2),
            "perplexity": math.exp(min(nats, 700.0)), "tokens": N}


# ---- run directories: config.json, metrics.jsonl, checkpoints, resume ------------------------

MODEL_FOR_KIND = {"lm": "lm", "tagging": "lm", "classify": "classifier", "regress": "regressor",
                  "seq2seq": "seq2seq"}

# the training options a run's config holds (config["train"]), with their defaults
TRAIN_DEFAULTS = {"steps": 1000, "batch_size": 32, "seq_len": None, "optimizer": "adam",
                  "lr": 2e-3, "weight_decay": 0.0, "clip": 1.0, "warmup": 0, "decay": "none",
                  "tbptt": "random", "eval_every": 100, "eval_batches": 10,
                  "checkpoint_every": 100, "seed": 0}


def build_model_for(task, backbone: str = "lstm", **options) -> nn.Module:
    """The model that fits ``task.kind``, with the task's vocabulary / input / output sizes."""
    kind, name = task.kind, MODEL_FOR_KIND.get(task.kind)
    if name is None:
        raise UserError(f"unknown task kind {kind!r}")
    options = {k: v for k, v in options.items() if v is not None}
    if name == "lm":
        if task.vocab_size != task.num_outputs:
            raise UserError(f"task {task.name!r}: the language model needs as many outputs as "
                            f"input tokens ({task.num_outputs} vs {task.vocab_size})")
        sizes = dict(vocab_size=task.vocab_size)
    elif name == "classifier":
        sizes = dict(num_classes=task.num_outputs, vocab_size=task.vocab_size,
                       input_size=task.input_size)
    elif name == "regressor":
        sizes = dict(input_size=task.input_size)
    else:
        if backbone == "attention":
            raise UserError("seq2seq models need a recurrent backbone (rnn, lstm or gru), "
                            "not attention")
        sizes = dict(src_vocab=task.vocab_size, tgt_vocab=task.num_outputs)
    from . import models
    return models.build(name, backbone=backbone, **sizes, **options)


def new_config(task_name: str = "shakespeare", task_options: dict | None = None,
               model_options: dict | None = None, **train_options) -> dict:
    """A run's config (plain JSON-able dict): {"task": {...}, "model": {...}, "train": {...}}.

    Builds the task (to learn its vocabulary and sizes) and the model (to record its full config).
    """
    from .data import build_task
    unknown = sorted(set(train_options) - set(TRAIN_DEFAULTS))
    if unknown:
        raise UserError(f"unknown training option(s): {', '.join(unknown)}")
    task = build_task(task_name, **(task_options or {}))
    model = build_model_for(task, **(model_options or {}))
    train = {**TRAIN_DEFAULTS, **train_options}
    return {"task": {"name": task.name, **task.config()}, "model": dict(model.config),
            "train": train}


def build_from_config(config: dict):
    """(task, model) of a run config; the model is built after seeding with the run's seed."""
    from . import models
    from .data import build_task
    task_cfg = dict(config["task"])
    task = build_task(task_cfg.pop("name"), **task_cfg)
    seed_everything(int(config["train"]["seed"]))
    model_cfg = dict(config["model"])
    model = models.build(model_cfg.pop("name"), **model_cfg)
    return task, model


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


def default_run_dir(config: dict, root: str | os.PathLike = "runs") -> Path:
    """runs/<task>-<backbone>-YYYYmmdd-HHMMSS (made unique with a suffix if it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    backbone = config["model"].get("backbone", "model")
    base = Path(root) / f"{config['task']['name']}-{backbone}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


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


def _params_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _tensorboard(out: Path, step: int):
    """A SummaryWriter under out/tensorboard when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is an optional extra
        return None
    try:
        return SummaryWriter(str(out / "tensorboard"), purge_step=step or None)
    except Exception:
        return None


class _StopFlag:
    """First Ctrl-C: finish the current step, save a checkpoint, stop. Second: interrupt now."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines after ``step`` (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            break  # a line cut by a crash: it and anything after it go
    path.write_text("".join(line + "\n" for line in keep))


def _json_default(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def train_run(out: str | os.PathLike, config: dict | None = None, *, resume: bool = False,
              steps: int | None = None, time_budget: float | None = None, device=None,
              progress: bool = True, log: Callable[[str], Any] | None = None) -> RunResult:
    """Train a run in directory ``out`` (new from ``config``, or ``resume``-d from its last.pt).

    Writes out/config.json, out/metrics.jsonl (one JSON line per step), out/last.pt every
    ``checkpoint_every`` steps and at the end, out/best.pt at the best validation loss,
    out/results.json, and TensorBoard events in out/tensorboard when tensorboard is installed.
    Resuming continues to ``steps`` in total exactly as if the run had never stopped (same
    batches, dropout masks, optimiser state). Raises ``RunDiverged`` (last good checkpoint
    intact) when the loss or gradient turns non-finite, ``UserError`` for a wrong request.
    """
    out = Path(out)
    log = log or (lambda s: print(s, file=sys.stderr))
    last = out / checkpoint.LAST
    if resume:
        if not out.is_dir():
            raise UserError(f"cannot resume: no run directory {out}")
        if not last.exists():
            raise UserError(f"cannot resume: no checkpoint ({checkpoint.LAST}) in {out}")
        payload = checkpoint.load(last)
        config = payload["config"]
        done = int(payload["step"])
        if steps is not None:
            if steps < done:
                raise UserError(f"--steps {steps} is below the checkpoint's step {done}")
            config["train"]["steps"] = steps
    else:
        if config is None:
            raise UserError("a new run needs a config")
        if last.exists():
            raise UserError(f"{out} already holds a run; resume it with --resume {out} "
                            "or choose another --out")
        if steps is not None:
            config["train"]["steps"] = steps
        payload, done = None, 0
    tc = {**TRAIN_DEFAULTS, **config["train"]}
    dev = resolve_device(device)
    task, model = build_from_config(config)
    trainer = Trainer(model, task, steps=int(tc["steps"]), batch_size=int(tc["batch_size"]),
                      seq_len=tc["seq_len"], optimizer=tc["optimizer"], lr=float(tc["lr"]),
                      weight_decay=float(tc["weight_decay"]), clip=tc["clip"],
                      warmup=int(tc["warmup"]), decay=tc["decay"], tbptt=tc["tbptt"],
                      eval_every=int(tc["eval_every"]), eval_batches=int(tc["eval_batches"]),
                      seed=int(tc["seed"]), device=dev)
    elapsed, best = 0.0, math.inf
    if payload is not None:
        trainer.load_state_dict(payload)
        elapsed = float(payload.get("elapsed", 0.0))
        best = float(payload.get("best_val_loss", math.inf))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics_path = out / "metrics.jsonl"
    if resume:
        _trim_metrics(metrics_path, done)
        for stale in out.glob(".*.pt.*.tmp"):  # a checkpoint write cut short by a crash
            stale.unlink(missing_ok=True)
    tokenizer = getattr(task, "tokenizer", None)
    tok_dict = tokenizer.to_dict() if tokenizer is not None else None
    ck_every = int(tc["checkpoint_every"] or 0)
    saved = {"path": last if resume else None, "step": done if resume else None}

    def save(path: Path, step: int) -> None:
        if not _params_finite(trainer.model):
            raise NonFiniteError(step, "parameters", float("nan"))
        checkpoint.save(path, {**trainer.state_dict(), "config": config, "tokenizer": tok_dict,
                               "elapsed": elapsed + time.perf_counter() - start,
                               "best_val_loss": best})
        if path == last:
            saved["path"], saved["step"] = path, step

    total = trainer.steps
    final: dict = {}
    stopped = "steps"
    start = time.perf_counter()
    writer = _tensorboard(out, done)
    try:
        with _StopFlag() as flag, _Progress(total, task.kind, progress, start=done) as bar, \
                open(metrics_path, "a", buffering=1) as metrics:
            if trainer.step >= total:
                stopped = "steps"
            while trainer.step < total:
                rec = trainer.train_step()
                now = time.perf_counter() - start
                rec["time"] = elapsed + now
                step = trainer.step
                finished = step >= total
                out_of_time = time_budget is not None and now >= time_budget
                if (trainer.eval_every and step % trainer.eval_every == 0) or finished \
                        or out_of_time or flag.set:
                    m = trainer.evaluate()
                    rec.update(_eval_record(m))
                    final = m
                    if m["loss"] < best:
                        best = m["loss"]
                        save(out / checkpoint.BEST, step)
                metrics.write(json.dumps(rec, default=_json_default) + "\n")
                if writer is not None:
                    for k, v in rec.items():
                        if k != "step" and isinstance(v, (int, float)):
                            writer.add_scalar(k.replace("val_", "val/"), v, step)
                bar.update(rec)
                if (ck_every and step % ck_every == 0) or finished or out_of_time or flag.set:
                    save(last, step)
                if flag.set:
                    stopped = "interrupted"
                    break
                if out_of_time and not finished:
                    stopped = "time"
                    break
    except NonFiniteError as e:
        raise RunDiverged(e.step, e.what, saved["path"], saved["step"]) from None
    finally:
        if writer is not None:
            writer.close()
    if not last.exists():  # resumed at the end already: nothing new to save
        save(last, trainer.step)
    results = {"step": trainer.step, "steps": total, "stopped": stopped,
               "final": {k: v for k, v in final.items() if not isinstance(v, dict)},
               "best_val_loss": best if math.isfinite(best) else None,
               "wall_time_s": elapsed + time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    return RunResult(out=out, step=trainer.step, stopped=stopped, final=final, checkpoint=last)
