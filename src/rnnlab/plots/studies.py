"""The studies' figures (rnnlab.studies)."""

from __future__ import annotations

from matplotlib.figure import Figure

# ---- studies -------------------------------------------------------------------------------
# Generic figures the studies compose: curves on shared axes (with per-seed lines, interval
# bands, reference lines that can be told apart, zeros marked under a log axis), a heat map with
# whole time steps, horizontal bars, and paired per-seed points.

_STYLE = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green",
          "attention-3l": "tab:pink", "attention": "tab:purple", "feedforward": "tab:gray",
          "bilstm": "tab:cyan", "mingru": "tab:orange", "minlstm": "gold", "lru": "teal"}
# reference lines (theory, baselines, targets): each its own colour and dash pattern
_REFS = [("black", "--"), ("tab:brown", "-."), ("tab:olive", ":"), ("dimgray", (0, (6, 2, 1, 2))),
         ("tab:cyan", (0, (1, 1)))]


def _color(name: str):
    name = str(name).lower()
    if name.startswith("bilstm"):
        return _STYLE["bilstm"]
    return next((c for k, c in _STYLE.items() if name.startswith(k)), None)


def _series(s) -> dict:
    """(xs, ys) or {"x", "y", "lo", "hi", "runs", "color", "style"} -> the dict form."""
    if isinstance(s, dict):
        return s
    xs, ys = s
    return {"x": xs, "y": ys}


def _nan(ys):
    return [float("nan") if y is None else float(y) for y in ys]


def _draw(ax, p: dict) -> None:
    """One panel: series, overlays (theory), hline (references), axes options."""
    logy = p.get("logy", False)
    zeros, used = [], set()
    spare = iter(["tab:orange", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "tab:gray",
                  "gold", "navy"])
    for label, s in p.get("series", {}).items():
        s = _series(s)
        xs, ys = list(s["x"]), _nan(s["y"])
        color = s.get("color") or _color(label)
        while (color, s.get("style", "-")) in used:  # two series must never look alike
            color = next(spare, None)
            if color is None:
                break
        used.add((color, s.get("style", "-")))
        line, = ax.plot(xs, ys, marker="o", ms=3, lw=1.6, label=label, color=color,
                        ls=s.get("style", "-"))
        color = line.get_color()
        for run in s.get("runs", []):  # one faint line per seed: ys, or (xs, ys) of its own
            rx, ry = run if isinstance(run, tuple) else (xs, run)
            ax.plot(rx, _nan(ry), lw=0.7, alpha=0.35, color=color)
        if s.get("lo") is not None:
            ax.fill_between(xs, _nan(s["lo"]), _nan(s["hi"]), color=color, alpha=0.15, lw=0)
        if logy:
            zx = [x for x, y in zip(xs, ys, strict=True) if y == y and y <= 0]
            if zx:
                zeros.append((label, zx, color))
    refs = iter(_REFS * 3)
    for label, (xs, ys) in p.get("overlays", {}).items():
        color, ls = next(refs)
        ax.plot(xs, _nan(ys), ls=ls, lw=1.3, label=label, color=_color(label) or color)
    for label, y in p.get("hline", {}).items():
        if y is not None:
            color, ls = next(refs)
            ax.axhline(y, ls=ls, color=color, lw=1.2, label=label)
    if logy:
        ax.set_yscale("log")
    if p.get("logx"):
        ax.set_xscale("log")
    for label, zx, color in zeros:  # a value of 0 has no place on a log axis: mark it
        ax.plot(zx, [0.03] * len(zx), transform=ax.get_xaxis_transform(), ls="none",
                marker="v", ms=7, color=color, clip_on=False, label=f"{label}: 0 (▼, off the axis)")
    if p.get("xticks"):
        from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

        ax.xaxis.set_major_locator(FixedLocator(p["xticks"]))
        ax.set_xticklabels([f"{v:g}" for v in p["xticks"]])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif p.get("integer_x", True) and not p.get("logx"):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if p.get("ylim") is not None:
        ax.set_ylim(*p["ylim"])
    ax.set(title=p.get("title", ""), xlabel=p.get("xlabel", ""), ylabel=p.get("ylabel", ""))
    ax.grid(True, alpha=0.3, which="both" if logy else "major")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_curves(series: dict, *, title: str, xlabel: str, ylabel: str, **panel) -> Figure:
    """Lines, one per series {label: (xs, ys) or {"x","y","lo","hi","runs"}}; ``panel`` takes
    ``_draw``'s options: overlays {label: (xs, ys)} (theory), hline {label: y} (references),
    logy, logx, xticks, ylim."""
    fig = Figure(figsize=(7, 4.2))
    _draw(fig.add_subplot(), {"series": series, "xlabel": xlabel, "ylabel": ylabel, **panel})
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_panels(panels: list[dict], *, title: str, ncols: int = 2) -> Figure:
    """Several panels side by side; each dict has ``_draw``'s keys (series, title, xlabel,
    ylabel, overlays, hline, logy, logx, xticks, ylim)."""
    n = len(panels)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows))
    for k, p in enumerate(panels):
        _draw(fig.add_subplot(nrows, ncols, k + 1), p)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_heatmap(values, *, title: str, xlabel: str, ylabel: str, ylabels: list[str],
                 log10: bool = True, cbar_label: str = "") -> Figure:
    """A (rows, T) heat map, e.g. ‖∂L/∂h_t‖ per layer (row) and step t = 1..T (column), on a
    log10 scale; the x ticks are whole time steps."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    v = np.asarray(values, dtype=float)
    if log10:
        v = np.log10(np.clip(v, 1e-300, None))
    fig = Figure(figsize=(8, 1.2 + 0.6 * v.shape[0]))
    ax = fig.add_subplot()
    im = ax.imshow(v, aspect="auto", cmap="viridis", interpolation="nearest",
                   extent=(0.5, v.shape[1] + 0.5, v.shape[0] - 0.5, -0.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(im, ax=ax, label=cbar_label or ("log10" if log10 else ""))
    fig.tight_layout()
    return fig


def plot_bars(values: dict, *, title: str, xlabel: str, logx: bool = False) -> Figure:
    """One horizontal bar per {label: value}, labels on the y axis (they never overlap)."""
    fig = Figure(figsize=(7, 0.9 + 0.45 * len(values)))
    ax = fig.add_subplot()
    labels = list(values)[::-1]
    xs = [0 if values[k] is None else values[k] for k in labels]
    bars = ax.barh(labels, xs, color=[_color(k) or "tab:gray" for k in labels])
    for b, x in zip(bars, xs, strict=True):
        ax.annotate(f" {x:,.0f}" if float(x).is_integer() else f" {x:.3g}",
                    (x, b.get_y() + b.get_height() / 2), va="center", fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlim(0 if not logx else None, max(xs) * 1.25 if xs else 1)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_paired(groups: dict, *, title: str, ylabel: str, logy: bool = False,
                hline: dict | None = None, summaries: dict | None = None) -> Figure:
    """Per-seed points of a few arms side by side, the points of one seed joined by a grey line
    (paired arms); ``groups`` {arm: {seed: value}}, ``summaries`` {arm: (mean, lo, hi)} drawn
    as a black bar: the mean and its 95 % interval."""
    fig = Figure(figsize=(1.6 + 1.5 * len(groups), 3.9))
    ax = fig.add_subplot()
    arms = list(groups)
    seeds = sorted({s for g in groups.values() for s in g})
    for s in seeds:
        ys = [groups[a].get(s) for a in arms]
        ax.plot(range(len(arms)), _nan(ys), color="lightgray", lw=0.9, zorder=1)
    for i, a in enumerate(arms):
        vals = [v for v in groups[a].values() if v is not None]
        ax.scatter([i] * len(vals), vals, s=22, color=_color(a) or "tab:blue", zorder=2,
                   label=None)
        if summaries and summaries.get(a) and summaries[a][0] is not None:
            m, lo, hi = summaries[a]
            err = None if lo is None else [[m - lo], [hi - m]]
            ax.errorbar([i + 0.18], [m], yerr=err, fmt="D", color="black", ms=5, capsize=4,
                        zorder=3)
    refs = iter(_REFS)
    for label, y in (hline or {}).items():
        color, ls = next(refs)
        ax.axhline(y, ls=ls, color=color, lw=1.2, label=label)
    ax.set_xticks(range(len(arms)), arms)
    ax.set_xlim(-0.5, len(arms) - 0.3)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, ylabel=ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    if hline:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
