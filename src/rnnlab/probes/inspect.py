"""``rnnlab inspect``: load a run, drive its model with a batch of its task, run the checklist."""

from __future__ import annotations

import torch

from .checklist import checklist
from .trajectory import find_recurrent


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
    from pathlib import Path

    from .. import checkpoint
    from ..errors import UserError

    run = checkpoint.load_run(path)
    try:
        layer = find_recurrent(run.model)
    except ValueError as e:
        raise UserError(f"{run.path}: {e} (attention models have no recurrence to probe)"
                        ) from None
    gen = torch.Generator().manual_seed(seed)
    if text is not None:
        from ..data import load_text

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
        res = checklist(run.model, x, threshold=threshold)
    else:
        res = checklist(run.model, x, threshold=threshold, batch=batch, task_kind=kind)

    ckpt = Path(run.path)
    run_dir = ckpt.parent if (ckpt.parent / "config.json").is_file() else None
    written = []
    if figures and run_dir is not None:
        from .. import plots

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
        for name, fig in figs.items():
            fig.savefig(fig_dir / name, dpi=110)
            written.append(fig_dir / name)
    return {"checkpoint": ckpt, "step": run.step, "run_dir": run_dir, "input": what,
            "rows": res["rows"], "figures": written, "probes": res["probes"]}
