"""Training: one ``TrainConfig`` of defaults, the ``Trainer``'s step, and one loop, ``fit``.

    from rnnlab import models, train
    history = train.fit(lambda: models.for_task(task, "gru", hidden_size=64), task,
                        steps=300, lr=3e-3)
    history.final, history.model

``TrainConfig`` holds every training default, once: ``fit``'s, a run's (``rnnlab.runs``) and the
``rnnlab train`` command's options are all read from it. ``fit`` seeds everything first and then
builds the model when given a builder (a zero-argument callable), so the same seed gives the
same initial weights whatever ran before; a model passed as a module is trained as it is.

One optimisation step (``Trainer.train_step``)::

    batch      = task.batch("train", B, generator, T)          # or the next chunk of task.stream
    loss       = L(model(batch.x), batch.y)                    # per task kind: rnnlab.losses
    g          = ∇θ loss                                       # BPTT through the chunk
    ‖g‖        = sqrt(Σ_p ‖g_p‖²)                              # logged *before* clipping
    g          ← g · min(1, clip / ‖g‖)                        # clipping by global norm
    θ          ← optimizer(θ, g, lr(step))                     # Adam / AdamW / SGD

Learning rate (``lr_at``): linear warmup  lr·(s+1)/W  for the first W steps, then either
constant or cosine decay  lr·(m + (1−m)·½(1 + cos(π·p))),  p = progress in [0, 1], m = 0.1.

Truncated BPTT: ``tbptt="random"`` draws independent random windows; ``"stateful"`` walks
the text as B parallel contiguous streams (``task.stream``), carrying the recurrent state from one
chunk to the next but detaching it (h ← h.detach()), so gradients flow back at most T steps.

Callbacks (as minGPT's trainer): objects with any of ``on_start(trainer)``,
``on_step(trainer, record, last)`` (return False to stop), ``on_end(trainer, history)`` and
``wants_stop()``; ``rnnlab.runs`` adds checkpoints, metrics.jsonl and signals this way. Two more
hooks: ``around_step(trainer)``, a context manager entered around the forward and backward of
the step being made (``trainer.step + 1``), and ``on_trace(trainer, record)``, which receives
the telemetry of a traced step.

Telemetry while training (``trace_every=N``): steps 1, N, 2N, ... run inside ``rnnlab.trace``
(``TraceEvery``), which records for every recurrent layer and direction ‖∂L/∂h_t‖, ‖∂L/∂c_t‖
and the gate statistics per time step, in the engine's own backward loop; the other steps run
as usual, so the cost is the traced steps' alone. Each record,
``{"step": s, "layers": {name: {"grad_h": (L·D, T), "grad_c": ..., "gates": {...}}}}``
(``rnnlab.telemetry.Trace.summary``), is appended to ``history.telemetry`` and handed to every
callback's ``on_trace``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import console, losses
from .errors import UserError
from .seeding import fingerprint, rng_state, seed_everything, set_rng_state

OPTIMIZERS = ("adam", "adamw", "sgd")
DECAYS = ("cosine", "none")
TBPTT = ("random", "stateful")
DTYPES = ("float32", "bfloat16", "float64")
MIN_LR_RATIO = 0.1  # cosine decays to 10 % of the base learning rate


@dataclass
class TrainConfig:
    """Every training option and its default (the one source of them)."""

    steps: int = 1000                 # optimisation steps in total
    batch_size: int = 32
    optimizer: str = "adam"           # adam, adamw or sgd
    lr: float = 2e-3                  # base learning rate
    weight_decay: float = 0.0
    clip: float | None = 1.0          # clip the gradient's global norm to this (0/None: off)
    warmup: int = 0                   # linear warmup steps
    decay: str = "cosine"             # after warmup: cosine (to 10 %) or none
    tbptt: str = "random"             # text: random windows or stateful contiguous chunks
    eval_every: int = 100             # validation every N steps (and at the end)
    eval_batches: int = 10
    checkpoint_every: int = 100       # runs: last.pt every N steps (and at the end)
    target: float | None = None       # stop early when the validation target_metric reaches it
    target_metric: str = "acc"
    time_budget: float | None = None  # stop (evaluated, checkpointed) after this many seconds
    trace_every: int = 0              # telemetry (rnnlab.trace) of steps 1, N, 2N, ...; 0: off
    seed: int = 0
    dtype: str = "float32"            # float32; bfloat16 (autocast); float64 (the whole model)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        unknown = sorted(set(d) - set(cls.fields()))
        if unknown:
            raise UserError(f"unknown training option(s): {', '.join(unknown)}; valid: "
                            f"{', '.join(cls.fields())}")
        return cls(**d).check()

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> TrainConfig:
        """Every bad value -> UserError naming the option (NaN and ±inf included)."""
        def integer(name, low):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v < 2**63:
                raise UserError(f"{name} must be an integer in [{low}, 2^63), got {v!r}")

        def number(name, low, open_low=False, optional=False):
            v = getattr(self, name)
            if v is None and optional:
                return
            ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                  and (v > low if open_low else v >= low))
            if not ok:
                raise UserError(f"{name} must be a finite number {'>' if open_low else '≥'} "
                                f"{low:g}, got {v!r}")

        for name in ("steps", "warmup", "eval_every", "checkpoint_every", "trace_every"):
            integer(name, 0)
        integer("batch_size", 1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < 2**63:
            raise UserError(f"seed must be an integer in [0, 2^63), got {self.seed!r}")
        integer("eval_batches", 1)
        number("lr", 0, open_low=True)
        number("weight_decay", 0)
        number("clip", 0, optional=True)
        number("time_budget", 0, open_low=True, optional=True)
        if self.target is not None:
            number("target", -math.inf)
        losses.check_metric(self.target_metric)
        for name, choices in (("optimizer", OPTIMIZERS), ("decay", DECAYS), ("tbptt", TBPTT),
                              ("dtype", DTYPES)):
            if getattr(self, name) not in choices:
                raise UserError(f"unknown {name} {getattr(self, name)!r} (choose from "
                                f"{', '.join(choices)})")
        return self


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


# ---- one step ----------------------------------------------------------------------------------

class NonFiniteError(Exception):
    """The loss or the gradient norm became NaN/Inf at ``step`` (the update was not applied)."""

    def __init__(self, step: int, what: str, value: float):
        self.step, self.what, self.value = step, what, value
        super().__init__(f"non-finite {what} ({value}) at step {step}")


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


def precision(model: nn.Module, dtype: str, device: torch.device):
    """Set ``model`` up for ``dtype``; return the context its forward passes run in.

    float32: as built. float64: the whole model in double precision (parameters, states and
    float inputs). bfloat16: mixed precision: the weights, gradients and optimiser stay
    float32, the forward runs under ``torch.autocast(device, bfloat16)`` (matrix products in
    bfloat16, the loss in float32), on CPU and CUDA. Autocast applies to torch's kernels, which
    rnnlab's layers run with backend "auto"/"fused"; a layer forced onto rnnlab's explicit
    BPTT engine (backend="engine") computes in its weights' dtype, so it is refused.
    """
    if dtype == "float64":
        model.to(torch.float64)
    if dtype != "bfloat16":
        return contextlib.nullcontext
    engine = [n for n, m in model.named_modules() if getattr(m, "backend", None) == "engine"]
    if engine:
        raise UserError(f"dtype bfloat16 (autocast) runs on torch's fused kernels, but layer "
                        f"{engine[0]!r} has backend='engine': rnnlab's explicit BPTT engine "
                        "computes in its weights' dtype (float32 or float64); use "
                        "backend='auto' or 'fused', or dtype float32")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


class Trainer:
    """The state of one training run and its step.

    Holds the model, optimiser, data generator, the stream position and carried recurrent
    state (stateful TBPTT) and the step count; ``state_dict``/``load_state_dict`` round-trip all
    of it (plus every random state) so a run resumed from a checkpoint continues exactly.
    """

    def __init__(self, model: nn.Module, task, config: TrainConfig | None = None, device=None):
        c = (config or TrainConfig()).check()
        if c.tbptt == "stateful" and task.kind != "lm":
            c = dataclasses.replace(c, tbptt="random")  # only LMs have one long stream to walk
        self.config = c
        self.device = torch.device(device) if device is not None else losses.model_device(model)
        self.model = model.to(self.device)
        self.autocast = precision(self.model, c.dtype, self.device)
        self.dtype = torch.float64 if c.dtype == "float64" else None  # float inputs' dtype
        self.task = task
        self.optimizer = make_optimizer(model.parameters(), c.optimizer, c.lr, c.weight_decay)
        self.generator = torch.Generator().manual_seed(c.seed)  # the data's random stream
        self.step = 0                 # updates done so far
        self.state = None             # carried recurrent state (stateful TBPTT)
        self.chunks = 0               # chunks of the current pass over the stream consumed
        self._stream: Iterator | None = None
        self.around_step: list[Callable] = []  # context managers around forward + backward

    # -- data --
    def next_batch(self):
        c = self.config
        if c.tbptt == "random":
            return self.task.batch("train", c.batch_size, self.generator)
        if self._stream is None:
            self._stream = self.task.stream("train", c.batch_size)
            for _ in range(self.chunks):  # resumed mid-pass: skip what was already used
                next(self._stream)
        try:
            batch = next(self._stream)
        except StopIteration:  # one pass over the text done: start again from fresh state
            self._stream = self.task.stream("train", c.batch_size)
            self.chunks, self.state = 0, None
            batch = next(self._stream)
        self.chunks += 1
        return batch

    # -- one update --
    def train_step(self) -> dict:
        """One optimisation step; raises ``NonFiniteError`` (without updating) on NaN/Inf."""
        model, kind, c = self.model, self.task.kind, self.config
        model.train()
        lr = lr_at(self.step, c.lr, c.warmup, c.decay, c.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.next_batch().to(self.device, self.dtype)
        step = self.step + 1
        with contextlib.ExitStack() as around:  # e.g. rnnlab.trace on a traced step
            for enter in self.around_step:
                around.enter_context(enter(self))
            with self.autocast():
                out, state = losses.forward(model, kind, batch, self.state)
                loss, t = losses.tally(kind, out, batch)
            if not math.isfinite(float(loss.detach())):
                raise NonFiniteError(step, "loss", float(loss.detach()))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        # ‖g‖ = sqrt(Σ ‖g_p‖²), measured before clipping; clipping scales g by min(1, c/‖g‖)
        max_norm = c.clip if c.clip else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        if not math.isfinite(norm):
            raise NonFiniteError(step, "gradient norm", norm)
        self.optimizer.step()
        if c.tbptt == "stateful":
            self.state = _detach(state)  # carry h across chunks, but not its gradient path
        self.step = step
        m = losses.metrics(kind, t)
        rec = {"step": step, "loss": m["loss"], "acc": m["acc"], "grad_norm": norm, "lr": lr}
        if "dep_acc" in m:
            rec["dep_acc"] = m["dep_acc"]
        return rec

    def evaluate(self) -> dict:
        """Validation metrics on fixed batches (the seed + 1 stream: the same every time)."""
        c = self.config
        with self.autocast():
            return losses.evaluate(self.model, self.task, "val", c.eval_batches, c.batch_size,
                                   generator=torch.Generator().manual_seed(c.seed + 1))

    # -- checkpoint round trip --
    def state_dict(self) -> dict:
        c = self.config
        return {"step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": {"lr": c.lr, "warmup": c.warmup, "decay": c.decay, "total": c.steps},
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


# ---- the loop ----------------------------------------------------------------------------------

@dataclass
class History:
    """What ``fit`` did: one record per step, plus how and when it stopped."""

    records: list = field(default_factory=list)   # {"step","loss","acc","grad_norm","lr","time",
    #                                                 and at eval steps "val_loss","val_acc",...}
    steps_to_target: int | None = None            # first eval step that reached the target
    final: dict = field(default_factory=dict)     # the last evaluation's metrics
    wall_time_s: float = 0.0
    stopped: str = "steps"             # "steps" | "target" | "time" | "callback" | "non-finite"
    nonfinite: dict | None = None                 # {"step", "what", "value"} when it diverged
    init_fingerprint: str = ""                    # hash of the initial weights (seeding.py)
    telemetry: list = field(default_factory=list)  # one record per traced step (trace_every)
    model: nn.Module | None = field(default=None, repr=False)  # the trained model

    @property
    def evals(self) -> list:
        """The records that carry validation metrics."""
        return [r for r in self.records if "val_loss" in r]


class TraceEvery:
    """Callback: the telemetry of steps 1, N, 2N, ... (``rnnlab.trace`` around the step's forward
    and backward); each record goes to ``records`` and to every ``sinks`` callback's
    ``on_trace(trainer, record)``."""

    def __init__(self, every: int, sinks: Sequence = ()):
        self.every, self.sinks = every, list(sinks)
        self.records: list[dict] = []
        self._pending = None

    def due(self, step: int) -> bool:
        return step == 1 or step % self.every == 0

    def on_start(self, trainer) -> None:
        from .interop import recurrent_layers

        try:
            found = recurrent_layers(trainer.model)
        except ValueError as e:
            raise UserError(f"trace_every: {e}") from None
        if not found:
            raise UserError("trace_every needs a model with a recurrent layer (rnn, lstm, gru); "
                            f"{type(trainer.model).__name__} has none")

    @contextlib.contextmanager
    def around_step(self, trainer):
        step = trainer.step + 1
        if not self.due(step):
            yield
            return
        from .telemetry import trace

        with trace(trainer.model) as tr:
            yield
        self._pending = (step, tr)

    def on_step(self, trainer, rec: dict, last: bool) -> None:
        if self._pending is None:
            return
        step, tr = self._pending
        self._pending = None
        record = {"step": step, "layers": tr.summary()}
        self.records.append(record)
        for cb in self.sinks:
            getattr(cb, "on_trace", lambda t, r: None)(trainer, record)


def _eval_record(m: dict) -> dict:
    return {f"val_{k}": v for k, v in m.items() if not isinstance(v, dict)}


def _stats(kind: str, rec: dict, unit: str = "char") -> str:
    """The progress line's figures for one step record (``unit``: what an LM's token is)."""
    if kind == "lm":
        bits = rec["loss"] / math.log(2)
        s = f"loss {rec['loss']:.3f}  " + (f"{bits:.3f} bpc" if unit == "char"
                                           else f"{bits:.2f} bits/{unit}")
    elif kind == "regress":
        s = f"mse {rec['loss']:.4f}"
    else:
        s = f"loss {rec['loss']:.3f}  acc {rec['acc']:.3f}"
    if "val_loss" in rec:
        s += (f"  val {rec.get('val_bpc', float('nan')):.3f} bpc" if kind == "lm"
              else f"  val acc {rec.get('val_acc', float('nan')):.3f}")
    return s


def fit(model: nn.Module | Callable[[], nn.Module], task, config: TrainConfig | None = None, *,
        callbacks: Sequence = (), device=None, progress: bool = False, resume: dict | None = None,
        on_nonfinite: str = "stop", **overrides) -> History:
    """Train on ``task`` for ``config.steps`` updates; return the ``History`` (with ``.model``).

    ``model``: a zero-argument builder, called after ``seed_everything(config.seed)`` (the
    same seed, the same initial weights), or a module trained as it is. ``config`` defaults to
    ``TrainConfig()``; keyword ``overrides`` replace single options (``fit(m, task, lr=1e-2)``).
    ``resume``: a checkpoint payload (``Trainer.state_dict()`` plus "elapsed") to continue from.

    Evaluates on "val" every ``eval_every`` steps and at the end; stops early when the
    validation ``target_metric`` (e.g. "acc", "dep_acc", "loss", "mse") reaches ``target``, after
    ``time_budget`` seconds, or when a callback asks. When the loss or gradient turns non-finite
    the update is skipped and training stops: ``history.stopped == "non-finite"``
    (``on_nonfinite="raise"`` raises ``NonFiniteError`` instead). With ``trace_every=N`` the
    telemetry of steps 1, N, 2N, ... goes to ``history.telemetry`` and to the callbacks'
    ``on_trace`` (see the module's docstring).
    """
    c = (config or TrainConfig()).replace(**overrides) if overrides else \
        (config or TrainConfig()).check()
    seed_everything(c.seed)
    if not isinstance(model, nn.Module):
        model = model()  # built after seeding
    history = History(init_fingerprint=fingerprint(model), model=model)
    trainer = Trainer(model, task, c, device)
    if c.trace_every:
        tracer = TraceEvery(c.trace_every, callbacks)
        history.telemetry = tracer.records
        callbacks = [tracer, *callbacks]
    trainer.around_step = [cb.around_step for cb in callbacks if hasattr(cb, "around_step")]
    elapsed = 0.0
    if resume is not None:
        trainer.load_state_dict(resume)
        elapsed = float(resume.get("elapsed", 0.0))
    for cb in callbacks:
        getattr(cb, "on_start", lambda t: None)(trainer)
    bar = console.Progress(c.steps, "train", start=trainer.step, enabled=progress)
    start = time.perf_counter()
    with bar:
        while trainer.step < c.steps:
            try:
                rec = trainer.train_step()
            except NonFiniteError as e:
                if on_nonfinite == "raise":
                    raise
                history.stopped = "non-finite"
                history.nonfinite = {"step": e.step, "what": e.what, "value": e.value}
                break
            now = time.perf_counter() - start
            rec["time"] = elapsed + now
            done = trainer.step >= c.steps
            out_of_time = c.time_budget is not None and now >= c.time_budget
            asked = any(getattr(cb, "wants_stop", lambda: False)() for cb in callbacks)
            if (c.eval_every and trainer.step % c.eval_every == 0) or done or out_of_time \
                    or asked:
                m = trainer.evaluate()
                rec.update(_eval_record(m))
                history.final = m
                if c.target is not None and history.steps_to_target is None \
                        and losses.reached(m, c.target_metric, c.target):
                    history.steps_to_target = trainer.step
                    history.stopped = "target"
            last = done or out_of_time or asked or history.stopped == "target"
            history.records.append(rec)
            bar.update(trainer.step, _stats(task.kind, rec, getattr(task, "tokens", "char")))
            if any([cb.on_step(trainer, rec, last) is False
                    for cb in callbacks if hasattr(cb, "on_step")]):
                history.stopped = "callback"
                break
            if last:
                if asked:
                    history.stopped = "interrupted"
                elif out_of_time and not done and history.stopped != "target":
                    history.stopped = "time"
                break
    history.wall_time_s = time.perf_counter() - start
    for cb in callbacks:
        getattr(cb, "on_end", lambda t, h: None)(trainer, history)
    return history
