"""Figures: every plot_* returns a ``matplotlib.figure.Figure`` (no pyplot global state, no
display); save it with ``fig.savefig(path, dpi=110)``.

Two sections: the probes' companions (rnnlab.probes) and the studies' figures (rnnlab.studies).
"""

from __future__ import annotations

from matplotlib.figure import Figure

# ---- probes --------------------------------------------------------------------------------
# Companions of rnnlab.probes: each takes what the probe returns (tensors / plain data).


_PCOLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}


def _pcolor(label: str):
    """A model family's colour when the label starts with its name (rnn/lstm/gru), else None."""
    return next((c for k, c in _PCOLORS.items() if str(label).lower().startswith(k)), None)


def _pcolors(labels) -> dict:
    """One distinct colour per label: the family colour where it applies, else the next free."""
    spare = ["tab:orange", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink",
             "tab:gray"]
    out, used = {}, set()
    for label in labels:
        c = _pcolor(label)
        if c is None or c in used:
            c = next((x for x in spare if x not in used), None)
        out[label] = c
        used.add(c)
    return out


def _np(v):
    import numpy as np

    return np.asarray(v.detach().cpu().double() if hasattr(v, "detach") else v, dtype=float)


def plot_jacobian_norms(norms, *, theory_r: float | None = None,
                        title: str = "‖∂h_T/∂h_t‖₂ through time",
                        ylabel: str = "‖∂s_{T−1}/∂s_t‖₂") -> Figure:
    """Log-scale ‖∂s_{T−1}/∂s_t‖₂ against t (``probes.jacobian_norms``). ``norms`` is a (T,)
    tensor, a (B, T) tensor (one faint line per example plus the mean), or {label: (T,)} to
    compare models. ``theory_r`` overlays the closed form r^(T−1−t) (dashed), e.g. r = σ_max."""
    import numpy as np

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    series = norms if isinstance(norms, dict) else {"measured": norms}
    colors = _pcolors(series)
    T = 0
    for label, v in series.items():
        v, color = _np(v), colors[label]
        if v.ndim == 2:
            for row in v:
                ax.plot(np.arange(row.size), row, lw=0.6, alpha=0.3, color=color)
            v = v.mean(0)
            label = f"{label} (batch mean)"
        T = max(T, v.size)
        ax.plot(np.arange(v.size), v, marker="o", ms=2.5, lw=1.6, label=label, color=color)
    if theory_r is not None and T:
        t = np.arange(T)
        ax.plot(t, float(theory_r) ** (T - 1 - t), ls="--", color="black",
                label=f"theory r^(T−1−t), r = {theory_r:.3g}")
    ax.set_yscale("log")
    ax.set(title=title, xlabel="t (state after step t; final state at T−1)", ylabel=ylabel)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_spectrum(spec: list, *, blocks: tuple | None = None) -> Figure:
    """``probes.spectral`` rows drawn two ways: eigenvalues of each square W_hh block on the
    complex plane with the unit circle (left), and sorted singular values against the line
    σ = 1 (right). ``blocks`` picks block names (default: "W_hh" for the RNN, the gate blocks
    for LSTM/GRU)."""
    import numpy as np

    rows = [r for r in spec if r["eigenvalues"] is not None]
    if blocks is not None:
        rows = [r for r in rows if r["block"] in blocks]
    fig = Figure(figsize=(11, 4.6))
    ax_c, ax_s = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    th = np.linspace(0, 2 * np.pi, 361)
    ax_c.plot(np.cos(th), np.sin(th), color="black", lw=1, label="unit circle")
    for r in rows:
        lab = f"l{r['layer']}{'r' if r['direction'] else ''} {r['block']}"
        ev = r["eigenvalues"].detach().cpu().numpy()
        pts = ax_c.scatter(ev.real, ev.imag, s=10, alpha=0.7,
                           label=f"{lab} (ρ={r['spectral_radius']:.3g})")
        sv = _np(r["singular_values"])
        ax_s.plot(np.arange(1, sv.size + 1), sv, marker=".", color=pts.get_facecolor()[0],
                  label=f"{lab} (σ_max={r['sigma_max']:.3g}, {r['regime']})")
    ax_s.axhline(1.0, ls="--", color="black", lw=1)
    ax_c.set_aspect("equal", adjustable="datalim")
    ax_c.set(title="eigenvalues of W_hh", xlabel="Re λ", ylabel="Im λ")
    ax_s.set(title="singular values of W_hh", xlabel="index", ylabel="σ_i")
    for ax in (ax_c, ax_s):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_lyapunov(exponents, *, title: str = "Lyapunov spectrum") -> Figure:
    """λ_i against i (``probes.lyapunov_spectrum``; a (k,) tensor or {label: (k,)}), with the
    zero line; the legend gives each λ₁ and its memory time scale 1/|λ₁|."""
    import numpy as np

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    series = exponents if isinstance(exponents, dict) else {"λ": exponents}
    colors = _pcolors(series)
    for label, v in series.items():
        v = _np(v)
        v = v.mean(0) if v.ndim == 2 else v
        tau = np.inf if v[0] == 0 else 1 / abs(v[0])
        ax.plot(np.arange(1, v.size + 1), v, marker="o", ms=3, color=colors[label],
                label=f"{label}: λ₁ = {v[0]:.3g} /step, 1/|λ₁| = {tau:.3g} steps")
    ax.axhline(0.0, color="black", lw=1)
    ax.set(title=title, xlabel="i", ylabel="λ_i (ln per step)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gate_stats(stats: dict, *, row: int = 0) -> Figure:
    """``probes.gate_stats`` for one layer/direction row (k = layer·D + direction): per gate,
    the histogram over the whole run (left) and the mean and fraction saturated per step
    (right)."""
    import numpy as np

    names = list(stats)
    fig = Figure(figsize=(10, 2.3 * len(names) + 0.6))
    for j, name in enumerate(names):
        s = stats[name]
        ax_h = fig.add_subplot(len(names), 2, 2 * j + 1)
        ax_t = fig.add_subplot(len(names), 2, 2 * j + 2)
        edges = _np(s["edges"])
        ax_h.bar(edges[:-1], _np(s["run_hist"][row]), width=np.diff(edges), align="edge",
                 color="tab:blue", alpha=0.8)
        ax_h.set(title=f"{name}: run histogram (saturated {float(s['run_saturated'][row]):.1%})",
                 ylabel="fraction")
        T = s["mean"].shape[1]
        ax_t.plot(np.arange(T), _np(s["mean"][row]), label="mean", color="tab:blue")
        ax_t.plot(np.arange(T), _np(s["saturated"][row]), label="saturated", color="tab:red")
        ax_t.set(title=f"{name} per step", ylim=(-1.05 if edges[0] < 0 else -0.05, 1.05))
        ax_t.grid(True, alpha=0.3)
        ax_t.legend(fontsize=7)
    fig.axes[-1].set_xlabel("t")
    fig.tight_layout()
    return fig

# ---- studies -------------------------------------------------------------------------------
# Generic figures the studies compose: curves on shared axes, a heat map, bars.

_STYLE = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green",
          "attention-3l": "tab:pink", "attention": "tab:purple", "feedforward": "tab:gray"}


def _color(name: str):
    return next((c for k, c in _STYLE.items() if name.lower().startswith(k)), None)


def plot_curves(series: dict, *, title: str, xlabel: str, ylabel: str, logy: bool = False,
                logx: bool = False, overlays: dict | None = None, hline: dict | None = None,
                ylim=None) -> Figure:
    """Lines, one per series {label: (xs, ys)}; overlays {label: (xs, ys)} dashed (theory);
    hline {label: y} horizontal reference lines (e.g. a baseline)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for label, (xs, ys) in series.items():
        ys = [float("nan") if y is None else y for y in ys]
        ax.plot(xs, ys, marker="o", ms=3, lw=1.6, label=label, color=_color(label))
    for label, (xs, ys) in (overlays or {}).items():
        ax.plot(xs, ys, ls="--", lw=1.2, label=label, color=_color(label) or "black", alpha=0.8)
    for label, y in (hline or {}).items():
        ax.axhline(y, ls=":", color="black", lw=1.2, label=label)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_panels(panels: list[dict], *, title: str, ncols: int = 2) -> Figure:
    """Several plot_curves-like panels side by side; each dict has the keys of plot_curves
    (series, title, xlabel, ylabel, logy, logx, overlays, hline)."""
    n = len(panels)
    nrows = (n + ncols - 1) // ncols
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows))
    for k, p in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for label, (xs, ys) in p["series"].items():
            ys = [float("nan") if y is None else y for y in ys]
            ax.plot(xs, ys, marker="o", ms=2.5, lw=1.4, label=label, color=_color(label))
        for label, (xs, ys) in p.get("overlays", {}).items():
            ax.plot(xs, ys, ls="--", lw=1.1, label=label, color=_color(label) or "black")
        for label, y in p.get("hline", {}).items():
            ax.axhline(y, ls=":", color="black", lw=1.1, label=label)
        if p.get("logy"):
            ax.set_yscale("log")
        if p.get("logx"):
            ax.set_xscale("log")
        ax.set(title=p.get("title", ""), xlabel=p.get("xlabel", ""), ylabel=p.get("ylabel", ""))
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_heatmap(values, *, title: str, xlabel: str, ylabel: str, ylabels: list[str],
                 log10: bool = True, cbar_label: str = "") -> Figure:
    """A (rows, T) heat map, e.g. ‖∂L/∂h_t‖ per layer (row) and step (column), on log10 scale."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if log10:
        v = np.log10(np.clip(v, 1e-300, None))
    fig = Figure(figsize=(8, 1.2 + 0.6 * v.shape[0]))
    ax = fig.add_subplot()
    im = ax.imshow(v, aspect="auto", cmap="viridis", interpolation="nearest",
                   extent=(0.5, v.shape[1] + 0.5, v.shape[0] - 0.5, -0.5))
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(im, ax=ax, label=cbar_label or ("log10" if log10 else ""))
    fig.tight_layout()
    return fig


def plot_bars(values: dict, *, title: str, ylabel: str, logy: bool = False,
              annotate: bool = True) -> Figure:
    """One bar per {label: value}."""
    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot()
    labels = list(values)
    ys = [0 if values[k] is None else values[k] for k in labels]
    bars = ax.bar(labels, ys, color=[_color(k) or "tab:gray" for k in labels])
    if annotate:
        for b, y in zip(bars, ys, strict=True):
            ax.annotate(f"{y:,.3g}", (b.get_x() + b.get_width() / 2, y), ha="center",
                        va="bottom", fontsize=8)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, ylabel=ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig

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
        y = np.concatenate([[s[0] - (mid[0] - s[0] if mid.size else 0.5)], mid,
                            [s[-1] + (s[-1] - mid[-1] if mid.size else 0.5)]])
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
