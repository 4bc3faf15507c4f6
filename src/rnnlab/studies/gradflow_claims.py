"""gradflow's claims, tables and figures, from the runs of ``gradflow.py`` (one per arm × seed)."""

from __future__ import annotations

import math

from .. import plots
from .claims import above, below, brief, claim, every, source, within
from .common import Runs, Summary, sig, table
from .gradflow_scan_claims import scan_claims, scan_panel, scan_table
from .stats import log_interval, measurement

T_CURVE = 50
DEMO_T = 100
TOL = 0.01  # a decay "matches" r = 0.9 when the fitted factor per step is within ±0.01
SIDE = source("side", "The headline numbers (table: gradient magnitude at x_1)",
              "Pascanu, Mikolov & Bengio 2013")
ATT = source("side", "Model 3 — Self-attention; The headline numbers",
             "Vaswani et al. 2017, §4 “Why Self-Attention” (path length)")
DEMO = source("seq2seq", "§3, Code Fragment 3.1.2 (vanishing-gradient demo) and its exercises",
              "Bengio, Simard & Frasconi 1994; Pascanu et al. 2013")


def _geo(runs: Runs, arm: str, key: str, i: int):
    """Geometric mean over seeds of run[key][i] (and the per-seed values)."""
    vals = [v for v in runs.values(arm, lambda r: (r.get(key) or [None] * (i + 1))[i])
            if v is not None]
    m = log_interval(vals)[0] if vals else None
    return sig(m, 3)


def summarise(runs: Runs, profile: str, seeds: list[int]) -> Summary:
    any_run = runs.first("rnn-theory") or runs.first("attention-1l") or {}
    lengths = any_run.get("lengths", [])
    i50 = lengths.index(50) if 50 in lengths else max(0, len(lengths) - 1)
    T50 = lengths[i50] if lengths else None
    v = lambda arm, key: runs.values(arm, key, seeds)
    expect = {T: 0.9 ** (T - 1) for T in lengths}
    pred = f"0.9 per step: first/last = 0.9^(T−1), {0.9 ** 4:.2f} at T=5, {0.9 ** 49:.4f} at T=50"
    crit = within(0.9 - TOL, 0.9 + TOL, "fitted decay per step within 0.9 ± 0.01 (a "
                  "least-squares fit of ln(first/last) against T − 1 over all lengths)")
    lstm_full = measurement(v("lstm-theory", "factor"), seeds)
    claims = [
        claim("rnn_r_pow", "Vanilla RNN with recurrent spectral radius r = 0.9 (linear regime): "
              "the first-token gradient shrinks by r per step, first/last = 0.9^(T−1).",
              "Vanilla RNN: O(r^T) — 0.66 at T=5, 0.005 at T=50.", SIDE, crit, pred,
              measurement(v("rnn-theory", "factor"), seeds, digits=5), arms=("rnn-theory",)),
        claim("lstm_c_path", "LSTM with forget gate f ≈ 0.9: along the cell path the gradient "
              "shrinks by f per step, ‖∂L/∂c_1‖/‖∂L/∂c_T‖ = ∏f_t ≈ 0.9^(T−1).",
              "LSTM (c path): O(f^T) (controllable) — 0.66 at T=5, 0.005 at T=50. … "
              "∂c_t/∂c_{t−1} = f_t. That's it.", SIDE, crit, pred,
              measurement(v("lstm-theory", lambda r: r["path_factor"]["c_only"]), seeds,
                          digits=5), arms=("lstm-theory",),
              literal={"reading": "the whole LSTM's first-token gradient ‖∂L/∂x_1‖/‖∂L/∂x_T‖ "
                                  "decays like 0.9^(T−1)",
                       "measured": f"fitted decay per step {brief(lstm_full, 4)} for the full "
                                   "model",
                       "explanation": "the notes' row is the cell path. The full model adds a "
                                      "second route, h_{t−1} → gates → c_t, which carries a "
                                      "little gradient of its own each step, so the full "
                                      "model decays a bit more slowly than ∏f_t."}),
        claim("gru_keep_gate", "GRU with keep gate z ≈ 0.9 (torch: h_t = (1−z)⊙n + z⊙h_{t−1}): "
              "the first-token gradient shrinks by z per step.",
              "h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t (the notes' z is torch's 1 − z)",
              source("diagnostics", "6. GRU Cell (update gate, hidden update)",
                     "Cho et al. 2014"), crit, "0.9 per step, like ∏f_t",
              measurement(v("gru-theory", "factor"), seeds, digits=5), arms=("gru-theory",)),
    ]
    h_vs_rnn = [math.log10(h / r) if h and r else None for h, r in zip(
        v("lstm-default", lambda x: x["path_factor"]["h_only"]), v("rnn-default", "factor"),
        strict=True)]
    claims.append(claim(
        "lstm_h_path", "At default init the LSTM's hidden path alone (cell recurrence cut) "
        "decays like a vanilla RNN's: per step the same factor within a factor 2.",
        "LSTM (h path): Same as RNN — but c is the highway. … the h_t path has the same "
        "vanishing as RNN", SIDE, within(-0.3, 0.3, "|log10(h-path factor / RNN factor)| < 0.3 "
                                                    "(the same per-step factor within 2×)"),
        "decays like the RNN's", measurement(h_vs_rnn, seeds, unit="log10 ratio"),
        arms=("lstm-default", "rnn-default"),
        note="factors: LSTM h path " + brief(measurement(v("lstm-default", lambda x: x[
            "path_factor"]["h_only"]), seeds), 4) + "; RNN " + brief(measurement(
                v("rnn-default", "factor"), seeds), 4) + " (both torch's default init)"))
    for arm, name in (("attention-1l", "1 layer"), ("attention-3l", "3 layers")):
        fl = measurement(v(arm, lambda r: r["first_last"][i50]), seeds, scale="log")
        claims.append(claim(
            f"attention_o1_{arm[-2:]}", f"Attention ({name}): the first-token gradient is O(1) at "
            f"T = {T50}: ‖∂L/∂x_1‖ is as large as the gradient at the other non-final positions "
            "(first/median within [0.5, 2]).",
            "Attention (1 head): O(1), ~1 at T=5, ~1 at T=50. Attention (L layers): O(1)^L = "
            "O(1).", ATT, within(0.5, 2.0, "first/median of the other non-final positions "
                                 "within [0.5, 2]"), "~1",
            measurement(v(arm, lambda r: r["first_median"][i50]), seeds, scale="log"),
            arms=(arm,),
            literal={"reading": "‖∂L/∂x_1‖/‖∂L/∂x_T‖ ≈ 1",
                     "measured": f"first/last = {brief(fl, 4)} at T = {T50}, about c/T",
                     "explanation": "x_T has a privileged path to y_T (the residual stream) "
                                    "and the softmax spreads its weight over T keys, so every "
                                    "non-final position, the first included, gets ≈ 1/T of "
                                    "x_T's gradient. Nothing decays along the path: the first "
                                    "position is no worse off than the middle ones."}))
    claims.append(claim(
        "attention_no_decay", "Attention (1 layer): the first-token gradient relative to the "
        "other positions does not shrink as T grows (path length 1, no compound product).",
        "There is no compound multiplication that grows or shrinks with T. The gradient depth "
        "from output to input is constant in T.", ATT,
        within(-0.25, 0.25, "log-log slope of first/median against T within ±0.25"),
        "slope 0", measurement(v("attention-1l", "median_slope"), seeds),
        arms=("attention-1l",),
        note="the RNN's slope at the theory settings: " + brief(measurement(
            v("rnn-theory", "median_slope"), seeds), 4)))
    ok = [None if r is None else r == lengths for r in v("rnn-theory", "path_length")]
    for arm in ("lstm-theory", "gru-theory"):
        ok = [a and (b == lengths) if a is not None and b is not None else None
              for a, b in zip(ok, v(arm, "path_length"), strict=True)]
    ok = [a and all(x == 1 for x in b) if a is not None and b is not None else None
          for a, b in zip(ok, v("attention-1l", "path_length"), strict=True)]
    claims.append(claim(
        "path_length", "Path length from the output y_T to the first input: T sequential cell "
        "applications for RNN, LSTM and GRU, one hop for attention, at every length.",
        "RNN: T (each step is one node). LSTM: T … Attention: 1 (one matmul connects every "
        "input to every output).", ATT, every("T for the recurrent models, 1 for attention, "
                                              "at every T"),
        "T, T, T, 1", measurement([None if x is None else float(x) for x in ok], seeds),
        arms=("rnn-theory", "lstm-theory", "gru-theory", "attention-1l"),
        note="1 + the smallest truncated-BPTT window for which ∂L/∂x_1 ≠ 0 (bisection); "
             "attention: layers needed for ∂L/∂x_1 ≠ 0"))
    claims.append(claim(
        "stack_every_layer_vanishes", "A 3-layer LSTM at default init: in every layer the "
        "gradient reaching t = 1 is below 1 % of that at t = T.",
        "Try nn.LSTM(input_size, hidden_size, num_layers=3) instead of 1 layer. What happens to "
        "the gradient distribution across time steps?", DEMO,
        below(1e-2, "the worst layer's ‖∂L/∂h_1‖/‖∂L/∂h_T‖ < 0.01"),
        "every layer vanishes over T steps (f ≈ 0.5 at default init)",
        measurement(v("lstm-stack", lambda r: max(r["first_last_by_layer"])), seeds,
                    scale="log"), arms=("lstm-stack",), kind="finding",
        note="from rnnlab.trace telemetry, checked against retain_grad on a step-by-step "
             "unrolling (largest relative difference " + str(max(
                 [x for x in v("lstm-stack", "max_rel_diff_vs_retain_grad") if x is not None]
                 or [None], key=lambda x: x or 0)) + ")"))
    claims.append(claim(
        "rnn_default_vanishes", f"The notes' demo (nn.RNN(32, 64), default init, T = {DEMO_T}, "
        "loss = Σ output_T): the gradient at the first step is a vanishing fraction of the "
        "last's.", "The gradient at step 0 is nearly 400,000 times smaller than at step 99.",
        DEMO, below(1e-3, "‖∂L/∂x_1‖/‖∂L/∂x_100‖ < 1e-3"), "≈ 2.5e-6 (1/400,000)",
        measurement(v("rnn-default", "demo_ratio"), seeds, scale="log"),
        arms=("rnn-default",)))
    lr = [math.log10(a / b) if a and b else None for a, b in zip(
        v("lstm-default", "demo_ratio"), v("rnn-default", "demo_ratio"), strict=True)]
    claims.append(claim(
        "lstm_vs_rnn_default", "Exercise: replace nn.RNN by nn.LSTM in the demo: the LSTM keeps "
        "more gradient at the first step (default init).",
        "Replace nn.RNN with nn.LSTM. Do the gradient norms at early time steps improve? By how "
        "much?", DEMO, above(0, "mean over seeds of log10(LSTM ratio / RNN ratio) > 0"),
        "the LSTM keeps more", measurement(lr, seeds, unit="log10 ratio"),
        arms=("lstm-default", "rnn-default"),
        note="torch's default LSTM init has forget bias ≈ 0, so f ≈ 0.5 per step"))
    figures, tables = _figures(runs, lengths, seeds), _tables(runs, lengths, expect)
    if runs.ok("lru-theory") or runs.ok("lru-ring") or runs.ok("mingru-theory"):
        claims += scan_claims(runs, seeds, lengths)
        tables.append(scan_table(runs, lengths))
        figures.append(("scan_ratio_vs_length", plots.plot_panels(
            [scan_panel(runs, lengths, _curve)], title=f"Scan recurrences ({len(seeds)} seeds)"),
            "The three closed-form rows (|λ|, 1 − z, f' all 0.9) lie on the dashed 0.9^(T−1) "
            "line: a diagonal recurrence multiplies the adjoint by its coefficient and nothing "
            "else. At default init minGRU's and minLSTM's gates sit near ½, so their state "
            "gradient falls about ½ per step, like the vanilla RNN's; the ring-initialised LRU "
            "(|λ| up to 0.999) is the upper curve (its measured ratio at the longest T is in the "
            "claims above)."))
    return Summary(claims, figures, tables,
                   _notes(profile), {"hidden_size": 32, "readout_classes": 16,
                                           "lengths": lengths, "T_per_position": T_CURVE,
                                           "dtype": "float64", "tolerance_per_step": TOL})



def _curve(runs: Runs, arm: str, key):
    """{"x", "y" (geometric mean over seeds), "runs"} of a per-length list."""
    ok = list(runs.ok(arm).values())
    if not ok:
        return None
    get = key if callable(key) else (lambda r: r[key])
    rows = [get(r) for r in ok]
    n = min(len(r) for r in rows)
    ys = []
    for i in range(n):
        col = [r[i] for r in rows if r[i] is not None and r[i] > 0]
        zero = any(r[i] == 0 for r in rows)  # underflowed to 0: marked under the log axis
        ys.append(log_interval(col)[0] if col else (0.0 if zero else None))
    return {"rows": rows, "y": ys}


def _figures(runs: Runs, L, seeds):
    def s(arm, key, x=None):
        c = _curve(runs, arm, key)
        return None if c is None else {"x": x or L, "y": c["y"], "runs": c["rows"]}

    def keep(d):
        return {k: v for k, v in d.items() if v is not None}

    theory = keep({"rnn (r = 0.9)": s("rnn-theory", "first_last"),
                   "lstm, full model": s("lstm-theory", "first_last"),
                   "lstm, cell path alone": s("lstm-theory", lambda r: r["paths"]["c_only"]),
                   "gru (z = 0.9)": s("gru-theory", "first_last")})
    attn = keep({"attention 1 layer: first/median": s("attention-1l", "first_median"),
                 "attention-3l: first/median": s("attention-3l", "first_median"),
                 "attention 1 layer: first/last": s("attention-1l", "first_last"),
                 "rnn (r = 0.9): first/median": s("rnn-theory", "first_median")})
    for k in attn:
        if "first/last" in k:
            attn[k]["style"] = "--"
    default = keep({"rnn": s("rnn-default", "first_last"), "lstm": s("lstm-default",
                                                                     "first_last"),
                    "gru": s("gru-default", "first_last")})
    fig1 = plots.plot_panels([
        {"title": "theory settings", "series": theory, "logy": True,
         "overlays": {"0.9^(T−1)": (L, [0.9 ** (T - 1) for T in L])},
         "xlabel": "sequence length T", "ylabel": "‖∂L/∂x_1‖ / ‖∂L/∂x_T‖ (cell path: c)"},
        {"title": "attention: fair and literal ratio", "series": attn, "logy": True,
         "overlays": {"1/T": (L, [1 / T for T in L])}, "hline": {"1 (no decay)": 1.0},
         "xlabel": "sequence length T", "ylabel": "ratio at the first token"},
        {"title": "torch default init", "series": default, "logy": True,
         "xlabel": "sequence length T", "ylabel": "‖∂L/∂x_1‖ / ‖∂L/∂x_T‖"},
    ], title=f"Gradient at the first token vs sequence length ({len(seeds)} seeds)", ncols=3)
    t = list(range(1, T_CURVE + 1))
    pos = keep({n: s(a, "profile", t) for n, a in (("rnn", "rnn-theory"),
                                                   ("lstm", "lstm-theory"),
                                                   ("gru", "gru-theory"),
                                                   ("attention", "attention-1l"))})
    lt = runs.first("lstm-theory")
    over = {"0.9^(T−t)": (t, [0.9 ** (T_CURVE - k) for k in t])}
    if lt:
        over["lstm ∏f (measured gates)"] = (t, lt["prod_f_profile"])
    fig2 = plots.plot_curves(pos, title=f"Per-position gradient at the theory settings, "
                             f"T = {T_CURVE}", xlabel="position t",
                             ylabel="‖∂L/∂x_t‖ / ‖∂L/∂x_T‖", logy=True, overlays=over)
    panels = []
    for arm, title in (("lstm-theory", "LSTM, f ≈ 0.9"), ("lstm-default", "LSTM, default init")):
        paths = keep({lab: s(arm, lambda r, k=k: r["paths"][k]) for lab, k in (
            ("cell path alone", "c_only"), ("hidden path alone", "h_only"),
            ("full model, c", "c_total"), ("full model, h", "h_total"))})
        first = runs.first(arm)
        panels.append({"title": title, "series": paths, "logy": True,
                       "xlabel": "sequence length T", "ylabel": "first / last",
                       "overlays": {"∏f_t (measured)": (L, first["paths"]["prod_f"])}
                       if first else {}})
    fig3 = plots.plot_panels(panels, title="The LSTM's cell path vs hidden path")
    out = [("ratio_vs_length", fig1,
            "Left: on a log axis a straight line is a geometric decay. The RNN, the GRU and the "
            "LSTM's cell path should lie on the dashed 0.9^(T−1) line; the full LSTM lies a "
            "little above it. Middle: attention's first/median stays near 1 at every T (no "
            "decay) while its literal first/last ratio (dashed) follows 1/T, and the RNN's "
            "first/median falls off. Right: at torch's default init every recurrent model "
            "vanishes within tens of steps. Faint lines are single seeds."),
           ("per_position", fig2,
            "Each curve is ‖∂L/∂x_t‖ relative to the last position, t = 1 on the left. The "
            "recurrent models follow 0.9^(T−t) from the right edge leftwards; attention is flat "
            "(every position one hop away) apart from the last token's own residual path.")]
    out.append(("lstm_c_vs_h_path", fig3,
                "The cell path alone (blue) equals the measured ∏f_t (dashed) to the last "
                "digit: that is the notes' highway. The hidden path alone collapses within a "
                "few steps, as an RNN's does. At default init f ≈ 0.5, so even the cell path "
                "vanishes."))
    st = runs.first("lstm-stack")
    if st:
        out.append(("stack_heatmap", plots.plot_heatmap(
            st["grad_h"], title=f"3-layer LSTM (default init, seed {st['seed']}): "
                                f"‖∂L/∂h_t‖ per layer and step, T = {st['T']}",
            xlabel="time step t", ylabel="layer", ylabels=["layer 1", "layer 2", "layer 3"],
            cbar_label="log10 ‖∂L/∂h_t‖"),
            "Colour is log10 of the gradient reaching h_t. Read each row right to left: the "
            "loss is at t = T, and every layer's gradient fades by orders of magnitude towards "
            "t = 1; the upper layers start higher."))
    return out


def _tables(runs: Runs, L, expect):
    rows = [[n, *[_geo(runs, a, "first_last", i) for i in range(len(L))]] for n, a in (
        ("rnn", "rnn-theory"), ("lstm (full)", "lstm-theory"), ("gru", "gru-theory"))]
    rows.append(["lstm cell path", *[sig(log_interval([v for v in runs.values(
        "lstm-theory", lambda r, i=i: r["paths"]["c_only"][i]) if v])[0], 3)
        for i in range(len(L))]])
    rows.append(["0.9^(T−1)", *[sig(expect[T], 3) for T in L]])
    att = [[f"{n}: {k.replace('_', '/')}", *[_geo(runs, a, k, i) for i in range(len(L))]]
           for n, a in (("attention 1 layer", "attention-1l"), ("attention 3 layers",
                                                                "attention-3l"),
                        ("rnn (r = 0.9)", "rnn-theory"))
           for k in ("first_median", "first_last")]
    return [table("‖∂L/∂x_1‖ / ‖∂L/∂x_T‖ at the theory settings (geometric mean over seeds)",
                  ["model", *[f"T={T}" for T in L]], rows),
            table("Attention: first vs median of the other non-final positions (fair) and "
                  "first vs last (literal)", ["model: ratio", *[f"T={T}" for T in L]], att)]


def _notes(profile: str):
    return ["Every ratio is a geometric mean over a batch of random N(0, 1) input sequences "
            f"({'8' if profile == 'quick' else '32' if profile == 'default' else '128'} per "
            "measurement, random targets), then over seeds.",
            "Theory settings: RNN W_hh = 0.9·orthogonal, W_ih = 0.01·orthogonal, zero biases "
            "(linear regime); LSTM forget bias logit(0.9) ≈ 2.197, weights ×0.1, other biases 0; "
            "GRU keep-gate bias logit(0.9), weights ×0.1; attention: pre-norm Transformer "
            "block(s), single head, causal, learned positions, standard init.",
            "Pairing: the theory and default arms of one cell are built from the same seed "
            "(the same init_fingerprint) before the theory settings are applied."]
