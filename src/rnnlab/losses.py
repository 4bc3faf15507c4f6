"""Loss and metrics per task kind, and ``evaluate``.

Loss by task kind (``Task.kind``):

- "lm", "tagging": masked cross-entropy  L = Σ_{b,t} m_bt · (−log p(y_bt)) / Σ m_bt  over
  ``Batch.mask``; metrics: accuracy, and over ``Batch.dep_mask`` the dependency accuracy
  (and by dependency distance);
- "classify": cross-entropy of the class, accuracy;
- "regress": mean squared error  L = mean (ŷ − y)²; "acc" is the fraction with |ŷ − y| < 0.04
  (the adding problem's criterion, Hochreiter & Schmidhuber 1997);
- "seq2seq": masked cross-entropy over the target tokens with teacher forcing, token accuracy;
  at evaluation also the greedy-decoding sequence accuracy ("seq_acc").

Per batch, ``tally`` returns the loss to minimise and *summable* counts (Σ loss, n, correct, ...);
``metrics`` turns summed counts into means, so an evaluation over many batches is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import masked_mean
from .data.base import KINDS
from .errors import UserError

REGRESS_TOLERANCE = 0.04  # |ŷ − y| below this counts as correct (adding problem)
LOWER_IS_BETTER = ("loss", "mse", "bpc", "ppl")


def forward(model: nn.Module, kind: str, batch, state=None):
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


def tally(kind: str, out: Tensor, batch) -> tuple[Tensor, dict]:
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


def merge(total: dict, t: dict) -> None:
    for k, v in t.items():
        if k == "by_distance":
            by = total.setdefault("by_distance", {})
            for d, (c, n) in v.items():
                prev = by.get(d, [0.0, 0.0])
                by[d] = [prev[0] + c, prev[1] + n]
        else:
            total[k] = total.get(k, 0.0) + v


def metrics(kind: str, t: dict) -> dict:
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
    out, _ = forward(model, task_kind, batch)
    loss, t = tally(task_kind, out, batch)
    return loss, metrics(task_kind, t)


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

    Returns "loss", "acc" and, where they apply, "bpc"/"ppl" (lm; for a word-level text "bpc"
    is per character of the text, whitespace included, and "bits_per_token" is added), "mse",
    "dep_acc" and "dep_acc_by_distance" {d: acc} (tasks with a dep_mask), "seq_acc" (seq2seq).
    Without a generator the same fixed batches are drawn every call (seed 0), so evaluations
    during training are comparable and do not disturb the training random streams.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    device = model_device(model)
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else None  # float64 models
    was_training = model.training
    model.eval()
    total: dict = {}
    try:
        for _ in range(batches):
            batch = task.batch(split, batch_size, generator, seq_len).to(device, dtype)
            out, _ = forward(model, task.kind, batch)
            merge(total, tally(task.kind, out, batch)[1])
            if task.kind == "seq2seq" and hasattr(model, "greedy"):
                merge(total, _greedy_tally(model, task, batch))
    finally:
        model.train(was_training)
    m = metrics(task.kind, total)
    if getattr(task, "tokens", "char") == "word":  # bpc stays per character: bits / chars
        m["bits_per_token"] = m["bpc"]
        m["bpc"] = m["bpc"] / task.chars_per_token
    return m


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


METRICS = ("loss", "acc", "bpc", "ppl", "mse", "dep_acc", "seq_acc")


def check_metric(name: str, option: str = "target_metric") -> None:
    if name not in METRICS:
        raise UserError(f"unknown {option} {name!r} (choose from {', '.join(METRICS)})")


def reached(m: dict, metric: str, target: float) -> bool:
    """Whether the metrics ``m`` reach ``target`` (≤ for losses, ≥ for accuracies)."""
    v = m.get(metric)
    if v is None or not math.isfinite(v):
        return False
    return v <= target if metric in LOWER_IS_BETTER else v >= target
