"""What a run logged while training: metrics.jsonl and telemetry.jsonl."""

from __future__ import annotations

from matplotlib.figure import Figure

from .probes import _np

# ---- training: metrics.jsonl and telemetry.jsonl -------------------------------------------
# Each takes the records as ``rnnlab.journal.read`` returns them (or ``history.records`` /
# ``history.telemetry`` of ``train.fit``): lists of dicts, tensors or plain lists alike.


def _running_mean(y, n: int):
    import numpy as np

    y = np.asarray(y, dtype=float)
    if y.size < 2 * n:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    out[n - 1 :] = (c[n:] - c[:-n]) / n
    out[: n - 1] = c[1:n] / np.arange(1, n)
    return out


def plot_learning_curves(metrics: list[dict], *, title: str = "learning curves") -> Figure:
    """From metrics.jsonl: the loss (train per step, faint, with its running mean; validation at
    the evaluation steps), the task's metric (bits per character for a language model, else
    accuracy, and the dependency / sequence accuracy where the task has them) and the gradient
    norm before clipping, against the training step."""
    import math

    import numpy as np

    fig = Figure(figsize=(13, 3.8))
    axes = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
    steps = np.array([r["step"] for r in metrics])
    ev = [r for r in metrics if r.get("val_loss") is not None]
    ev_steps = [r["step"] for r in ev]
    lm = any("val_bpc" in r for r in ev)

    def train_val(ax, train_key, val_key, scale=1.0, label=""):
        y = np.array([np.nan if r.get(train_key) is None else r[train_key] * scale
                      for r in metrics])
        if np.isfinite(y).any():
            ax.plot(steps, y, color="tab:blue", alpha=0.25, lw=0.8)
            ax.plot(steps, _running_mean(y, max(1, len(y) // 50)), color="tab:blue", lw=1.6,
                    label=f"train {label}".strip())
        vals = [r.get(val_key) for r in ev]
        if any(v is not None for v in vals):
            ax.plot(ev_steps, [np.nan if v is None else v for v in vals], marker="o", ms=3.5,
                    color="tab:orange", lw=1.6, label=f"validation {label}".strip())

    train_val(axes[0], "loss", "val_loss")
    axes[0].set(title="loss", ylabel="loss (nats)" if lm else "loss")
    if lm:
        train_val(axes[1], "loss", "val_bpc", 1 / math.log(2))
        axes[1].set(title="bits per character", ylabel="bits / char")
    else:
        train_val(axes[1], "acc", "val_acc", label="acc")
        for key in ("dep_acc", "seq_acc"):
            vals = [r.get(f"val_{key}") for r in ev]
            if any(v is not None for v in vals):
                axes[1].plot(ev_steps, [np.nan if v is None else v for v in vals], marker="s",
                             ms=3, lw=1.2, label=f"validation {key}")
        axes[1].set(title="accuracy", ylabel="accuracy", ylim=(-0.02, 1.02))
    gn = [r.get("grad_norm") for r in metrics]
    axes[2].plot(steps, [np.nan if g is None else g for g in gn], color="tab:gray", lw=0.9)
    axes[2].set(title="gradient norm (before clipping)", ylabel="‖g‖₂", yscale="log")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _rows(telemetry: list[dict], name: str, field: str, row: int):
    """(training steps, (n_steps, T) array) of one layer's row k of ``field`` ("grad_h",
    "grad_c", or "gate:stat" e.g. "f:mean"); shorter sequences padded with NaN."""
    import numpy as np

    steps, rows = [], []
    for rec in telemetry:
        layer = rec["layers"].get(name) or {}
        gate, _, stat = field.partition(":")
        v = layer.get("gates", {}).get(gate, {}).get(stat) if stat else layer.get(field)
        if v is not None:
            steps.append(rec["step"])
            rows.append(_np(v)[row])  # (None, from JSON's null, becomes NaN)
    grid = np.full((len(rows), max((len(r) for r in rows), default=0)), np.nan)
    for i, r in enumerate(rows):
        grid[i, : len(r)] = r
    return np.asarray(steps), grid


def _row_names(telemetry: list[dict]) -> list[tuple[str, int, str]]:
    """(layer name, row k, label) of every layer and row k = layer·D + direction."""
    last = {}
    for rec in telemetry:
        last.update(rec["layers"])
    return [(name, k, f"{name or 'layer'} l{k // D}" + (" reverse" if k % D else ""))
            for name, layer in last.items()
            for D in [layer.get("directions", 1)] for k in range(len(layer["grad_h"]))]


def _heatmaps(panels: list[tuple], field: str, title: str | None, ncols: int) -> Figure:
    """panels [(title, telemetry, layer name, row k)]: log₁₀ of ``field`` over (training step ×
    time step), one colour scale; pcolormesh draws irregular step spacing (1, N, 2N) to scale."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    grids = []
    for label, tele, name, k in panels:
        steps, grid = _rows(tele, name, field, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            grids.append((label, steps, np.log10(np.where(grid > 0, grid, np.nan))))
    vals = np.concatenate([g.ravel() for *_, g in grids] or [np.zeros(0)])
    vals = vals[np.isfinite(vals)]
    lims = (vals.min(), vals.max()) if vals.size else (None, None)
    ncols = max(1, min(ncols, len(grids)))
    nrows = max(1, (len(grids) + ncols - 1) // ncols)
    fig = Figure(figsize=(5.8 * ncols + 1, 3.4 * nrows + 0.5))
    mesh = None
    for i, (label, steps, grid) in enumerate(grids):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.set_title(label, fontsize=10)
        if not steps.size:
            continue
        s = steps.astype(float)
        mid = (s[1:] + s[:-1]) / 2
        # each traced step's band reaches halfway to its neighbours; the first and last stop
        # at their own step (no band below step 1 or past the last traced step)
        y = np.concatenate([[s[0] - (0 if mid.size else 0.5)], mid,
                            [s[-1] + (0 if mid.size else 0.5)]])
        mesh = ax.pcolormesh(np.arange(grid.shape[1] + 1) - 0.5, y, np.ma.masked_invalid(grid),
                             cmap="viridis", vmin=lims[0], vmax=lims[1], shading="flat")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="time step t", ylabel="training step")
    sym = "c" if field == "grad_c" else "h"
    if mesh is not None:
        fig.colorbar(mesh, ax=fig.axes, label=f"log₁₀ ‖∂L/∂{sym}_t‖₂ (batch mean)")
    fig.suptitle(title or f"gradient reaching {sym}_t through training")
    return fig


def plot_telemetry_heatmap(telemetry: list[dict], *, field: str = "grad_h",
                           title: str | None = None) -> Figure:
    """log₁₀ ‖∂L/∂h_t‖ (``field="grad_c"``: ‖∂L/∂c_t‖), batch mean, over (training step × time
    step t): one panel per recurrent layer, layer of the stack and direction, one colour scale.
    Where the gradient reaches the early tokens, the left columns stay bright."""
    return _heatmaps([(label, telemetry, name, k) for name, k, label in _row_names(telemetry)],
                     field, title, ncols=2)


def plot_telemetry_side_by_side(histories: dict[str, list[dict]], *, layer: str | None = None,
                                row: int = 0, field: str = "grad_h",
                                title: str | None = None) -> Figure:
    """The training-time heat maps of several runs next to each other on one colour scale,
    e.g. {"lstm": telemetry, "rnn": telemetry} (a study's LSTM against its vanilla RNN): each
    run's recurrent layer ``layer`` (default: its first) and row ``row`` (layer·D + direction)."""
    panels = []
    for label, tele in histories.items():
        names = [n for n, k, _ in _row_names(tele) if k == row] or [""]
        panels.append((label, tele, names[0] if layer is None else layer, row))
    return _heatmaps(panels, field, title, ncols=len(panels))


def plot_gate_history(telemetry: list[dict], *, gates: tuple[str, ...] = ("f", "z")
                      ) -> Figure | None:
    """The forget gate (LSTM f) / keep gate (GRU z; the textbooks' update gate is 1 − z) over
    training: per layer and direction, its mean over the batch, units and time steps (line), the
    means at the first and at the last time step (band between them), and the fraction
    saturated (dashed, right axis). None when no traced layer has such a gate (vanilla RNN)."""
    import numpy as np

    panels = []
    for name, k, label in _row_names(telemetry):
        for g in gates:
            steps, mean = _rows(telemetry, name, f"{g}:mean", k)
            if steps.size:
                sat = _rows(telemetry, name, f"{g}:saturated", k)[1]
                panels.append((label, g, steps, mean, sat))
    if not panels:
        return None
    ncols = 2 if len(panels) > 1 else 1
    nrows = (len(panels) + ncols - 1) // ncols
    fig = Figure(figsize=(6.2 * ncols, 3.2 * nrows + 0.3))
    word = {"f": "forget gate f", "z": "keep gate z"}
    for i, (label, g, steps, mean, sat) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        last = np.array([r[np.isfinite(r)][-1] for r in mean])  # the last step of each
        ax.fill_between(steps, mean[:, 0], last, color="tab:blue", alpha=0.15,
                        label="first … last time step")
        ax.plot(steps, np.nanmean(mean, 1), color="tab:blue", marker="o", ms=2.5,
                label=f"mean {g}")
        ax.set(title=f"{label}: {word.get(g, g)}", xlabel="training step", ylabel=f"mean {g}",
               ylim=(0, 1))
        ax2 = ax.twinx()
        ax2.plot(steps, np.nanmean(sat, 1), color="tab:red", ls="--", lw=1.2)
        ax2.set(ylim=(0, 1), ylabel="fraction saturated (dashed)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("gates over training")
    fig.tight_layout()
    return fig
