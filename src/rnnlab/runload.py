"""A trained run back from disk: its model, task and tokenizer, and what is asked of it.

    run = load_run("runs/shakespeare-lstm-20261202-101500")   # or a checkpoint .pt
    evaluate_run(run)              # its validation metrics
    score_text(run, text)          # a text run on any text (unseen tokens counted, skipped)
    inspect_run(path)              # the RNN debugging checklist, figures in <run>/figures/

``load_run`` rebuilds the model from the checkpoint's config (and its dtype), loads its weights,
rebuilds the task where it can and the tokenizer the run trained with. ``rnnlab.runs``
re-exports all of these.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint, losses, models, sizing
from .data import build_task
from .errors import UserError
from .train import TrainConfig


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
    from .data import tokenizer_from_dict

    file = checkpoint.find(path)
    payload = checkpoint.load(file)
    config = payload["config"]
    model_cfg = dict(config.get("model") or {})
    name = model_cfg.pop("name", None)
    if name is None:
        raise UserError(f"{file}: the checkpoint's config names no model")
    try:
        model = models.build(name, **model_cfg)
        if (config.get("train") or {}).get("dtype") == "float64":
            model.double()  # a float64 run keeps its precision
        model.load_state_dict(payload["model"])
    except UserError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{file}: the checkpoint does not match its model "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    model.to(device).eval()

    tok = payload.get("tokenizer")
    tokenizer = tokenizer_from_dict(tok) if tok else None
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
    """The run's validation metrics on its own fixed validation batches: "loss", "acc" and
    per kind "bpc", "ppl" (lm, with "tokens" scored), "mse", "dep_acc", ... (losses.metrics)."""
    if run.task is None:
        raise UserError(f"cannot rebuild the run's task: {run.task_error}")
    tc = TrainConfig.from_dict(run.config["train"])
    m = losses.evaluate(run.model, run.task, "val", batches, tc.batch_size,
                        generator=torch.Generator().manual_seed(tc.seed + 1))
    if run.task.kind == "lm" and getattr(run.task, "seq_len", None):
        m["tokens"] = batches * tc.batch_size * run.task.seq_len
    return m


MAX_UNSEEN = 0.10  # evaluate --text refuses a text with more of its tokens unseen than this


def score_text(run: Run, text: str, max_unseen: float = MAX_UNSEEN) -> dict:
    """A text run's figures on ``text``, with the keys of ``evaluate_run`` ("loss" in nats per
    token, "acc", "bpc" = loss / ln 2, "ppl", "tokens"; word runs: "bpc" per character of the
    text, whitespace included, with "bits_per_token" and "characters") plus "unseen_tokens" and
    "unseen_fraction": the text's tokens outside the vocabulary, which are skipped (they are
    not scored). UserError when that fraction exceeds ``max_unseen``: such a text is mostly
    something the model never saw, and its score would describe the few tokens left."""
    tok = run.tokenizer
    if tok is None or run.config.get("model", {}).get("name") != "lm":
        raise UserError("--text needs a text run (a language model with a vocabulary)")
    unseen = tok.unseen(text)
    n_unseen, total = sum(unseen.values()), tok.count(text)
    frac = n_unseen / max(total, 1)
    if frac > max_unseen:
        shown = ", ".join(repr(c) for c, _ in unseen.most_common(8))
        raise UserError(f"{n_unseen} of the text's {total} tokens ({frac:.1%}) are not in the "
                        f"model's vocabulary, more than --max-unseen {max_unseen:.0%} "
                        f"(e.g. {shown}): it is not the kind of text the model was trained on")
    seq_len = run.config.get("task", {}).get("seq_len") or 256
    s = run.model.score(tok.encode(text, unknown="skip"), seq_len=seq_len)
    nats = s["nats"]
    m = {"loss": nats, "acc": s["acc"], "bpc": nats / math.log(2),
         "ppl": math.exp(min(nats, 700.0)), "tokens": s["tokens"],
         "unseen_tokens": n_unseen, "unseen_fraction": frac}
    if tok.type == "word":  # per token, and per character of the text (whitespace included)
        m["bits_per_token"] = m["bpc"]
        m["bpc"] = nats * s["tokens"] / math.log(2) / len(text)
        m["characters"] = len(text)
    return m


def training_figures(run_dir: str | os.PathLike) -> dict:
    """{file name: Figure} of what a run logged while training: learning_curves.png
    (metrics.jsonl); with telemetry.jsonl, telemetry_grad_h.png (log₁₀ ‖∂L/∂h_t‖ over training
    step × time step), telemetry_grad_c.png (LSTM) and telemetry_gates.png (forget / keep gate
    over training)."""
    from . import journal, plots

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
    (inspect_jacobian.png, inspect_spectrum.png, inspect_lyapunov.png, inspect_gates.png), the
    run directory being the folder that holds the checkpoint and its config.json; nothing is
    written when there is no such folder. UserError for a missing path, a file that is no
    checkpoint, unreadable text, or a model without a recurrent layer.

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
            raise UserError("--text needs a run trained on text (it has no tokenizer)")
        ids = run.tokenizer.encode(load_text(text))[:seq_len]
        if ids.numel() < 2:
            raise UserError(f"--text {text}: need at least 2 tokens, got {ids.numel()}")
        x, what = ids.unsqueeze(0), f"{ids.numel()} {run.tokenizer.type}s of {text}"
    else:
        if run.task is None:
            raise UserError(f"cannot rebuild the run's task ({run.task_error}); "
                            "pass --text PATH")
        one = run.task.batch("val", 1, torch.Generator().manual_seed(seed), seq_len=seq_len)
        need = sizing.estimate(run.model, batch_size, one.x.shape[1], optimizer=None)
        sizing.check(need, losses.model_device(run.model),
                     f"probing a batch of {batch_size} × {one.x.shape[1]} steps",
                     "use a smaller --batch-size or --seq-len")
        p = next(run.model.parameters())
        batch = run.task.batch("val", batch_size, gen, seq_len=seq_len).to(p.device, p.dtype)
        x, kind = batch.x, run.task.kind
        what = f"validation batch of task {run.task.name!r}, x {tuple(x.shape)}"
        if batch.lengths is not None:  # the probes run unpadded sequences: the full-length rows
            x = x[batch.lengths == batch.lengths.max()]
            what += f" (probes on its {x.shape[0]} full-length rows)"
    p = next(run.model.parameters())
    x = x.to(p.device, p.dtype if x.is_floating_point() else None)
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
