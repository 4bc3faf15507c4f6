"""The probes' companions (rnnlab.probes): each takes what the probe returns."""

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
