"""gradflow: the gradient at the first token, RNN vs LSTM vs GRU vs attention, side by side.

The notes' table (Lesson 04): with the loss L at the last position only, the gradient reaching
the first input shrinks like r^(T−1) for a vanilla RNN with recurrent spectral radius r, like
∏f_t along the LSTM *cell path*, and not at all (O(1)) for attention, whose path from x_1 to
y_T is one hop instead of T.

Measured, per seed (a seed draws the weights, the inputs and the targets): x the (B, T, H)
inputs of the sequence model (requires_grad), L = Σ_b CE(W_o y_T^b, target_b), float64;
‖∂L/∂x_t‖ per example, averaged over the batch as a geometric mean (exp of the mean log):

- ``first/last`` = ‖∂L/∂x_1‖/‖∂L/∂x_T‖: the notes' ratio for the recurrent rows; its decay per
  step is the slope of ln(first/last) against T − 1 over the lengths (least squares);
- ``first/median`` = ‖∂L/∂x_1‖ / median_{1<t<T} ‖∂L/∂x_t‖: the fair test for attention, whose
  x_T has a privileged residual path (and whose softmax averages over T keys), so first/last ≈
  c/T there although nothing decays along the path;
- the LSTM's two paths: the cell path alone (h_{t−1} detached where it enters the gates: exactly
  ∂L/∂c_1 = ∂L/∂c_T ⊙ ∏f_t) and the hidden path alone (c_{t−1} detached in c_t).

Theory settings (what the notes' formulas assume): RNN W_hh = 0.9·Q (Q orthogonal), W_ih =
0.01·Q', zero biases (tanh′ ≈ 1: the linear regime); LSTM forget bias logit(0.9), weights × 0.1,
other biases 0 (f ≈ 0.9); GRU keep gate z (torch's h_t = (1−z)⊙n + z⊙h_{t−1}) bias logit(0.9),
weights × 0.1; attention: a pre-norm Transformer block (causal, single head, learned positions) at
its standard init, 1 and 3 layers. Default init: torch's U(±1/√H) for the recurrent layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import GRU, LSTM, RNN, trace
from ..attention import AttentionStack
from ..equations import unroll
from ..seeding import fingerprint, seed_everything
from .common import Outputs, pick, sig, specs
from .gradflow_claims import DEMO_T, T_CURVE
from .gradflow_claims import summarise as summarise  # the claims, tables and figures
from .gradflow_scan import ARMS as SCAN_ARMS
from .gradflow_scan import run_scan, state_ratio
from .stats import decay_factor, loglog_slope

NAME = "gradflow"
SEEDS = {"quick": 2, "default": 3, "full": 8}
H = 32  # input size = hidden size
V = 16  # classes of the readout at the last position
LOGIT_09 = math.log(0.9 / 0.1)  # σ(2.197) = 0.9
DT = torch.float64
INTRO = {
    "title": "The gradient at the first token",
    "question": "How much of the gradient of a loss at the last position reaches the first "
                "input, as the sequence grows: in a vanilla RNN, along the LSTM's cell state, in "
                "a GRU, and through attention?",
    "quote": "RNN multiplies the gradient by r^(T-1) (vanishes for r<1, explodes for r>1); LSTM "
             "via the cell state c_t multiplies by ∏ f_t (controllable via learned forget "
             "gates); attention multiplies by nothing — the path length is constant in T.",
    "source": {"lesson": "Lesson 04, “Side-by-side gradient flow: RNN vs LSTM vs attention on "
                         "the §A13 corpus” (side-by-side-gradient-flow)",
               "section": "The headline numbers; One-paragraph recap",
               "cites": "Pascanu, Mikolov & Bengio 2013; Hochreiter & Schmidhuber 1997; "
                        "Vaswani et al. 2017 §4"},
    "method": "Build each model from a seed, feed B random sequences, put a cross-entropy loss "
              "at the last position only, and measure ‖∂L/∂x_t‖ at every position, at lengths "
              "from 5 to 200, in float64.",
}
ARMS = {"rnn-theory": ("rnn", "theory"), "lstm-theory": ("lstm", "theory"),
        "gru-theory": ("gru", "theory"), "attention-1l": ("attention", "theory"),
        "attention-3l": ("attention-3l", "theory"), "rnn-default": ("rnn", "default"),
        "lstm-default": ("lstm", "default"), "gru-default": ("gru", "default"),
        "lstm-stack": ("lstm-stack", "default"), **SCAN_ARMS}


def plan(profile: str, seeds: list[int]):
    lengths = pick(profile, quick=[5, 10, 20, 50, 100], default=[5, 10, 20, 50, 100, 200],
                   full=[5, 10, 20, 50, 100, 200, 500])
    B = pick(profile, quick=8, default=32, full=128)
    T_stack = pick(profile, quick=20, default=50, full=100)
    cost = {a: pick(profile, quick=0.6, default=2.0, full=18.0) for a in ARMS}  # CPU s
    return specs(NAME, profile, seeds, {a: {"model": m, "setting": s, "lengths": lengths,
                                            "B": B, "T_stack": T_stack}
                                        for a, (m, s) in ARMS.items()}, cost)


# -- models ------------------------------------------------------------------------------------
def build(name: str, setting: str, seed: int, max_len: int) -> tuple[nn.Module, str]:
    """(model, fingerprint of its weights as built from the seed, before the setting's changes).
    name: rnn|lstm|gru|attention|attention-3l; setting: theory|default."""
    seed_everything(seed)
    kw = {"batch_first": True, "dtype": DT}
    if name.startswith("attention"):
        m = Outputs(AttentionStack(H, num_layers=3 if name == "attention-3l" else 1, num_heads=1,
                                causal=True, positional="learned", max_len=max_len)).to(DT)
        return m, fingerprint(m)
    core = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[name](H, H, **kw)
    fp = fingerprint(core)
    if setting == "theory":
        with torch.no_grad():
            if name == "rnn":  # W_hh = 0.9·Q, W_ih = 0.01·Q', b = 0: the linear regime
                nn.init.orthogonal_(core.weight_hh_l0).mul_(0.9)
                nn.init.orthogonal_(core.weight_ih_l0).mul_(0.01)
                core.bias_ih_l0.zero_()
                core.bias_hh_l0.zero_()
            else:  # weights × 0.1, biases 0 but the keep gate's: logit(0.9)
                core.weight_ih_l0.mul_(0.1)
                core.weight_hh_l0.mul_(0.1)
                core.bias_ih_l0.zero_()
                core.bias_hh_l0.zero_()
                keep = slice(H, 2 * H)  # LSTM f (i, f, g, o); GRU z (r, z, n)
                core.bias_ih_l0[keep].fill_(LOGIT_09)
    return Outputs(core), fp


def _inputs(B: int, T: int, seed: int, size: int = H):
    g = torch.Generator().manual_seed(seed * 100_003 + T)
    return (torch.randn(B, T, size, generator=g, dtype=DT), torch.randint(0, V, (B,), generator=g))


def _head(seed: int, size: int = H) -> nn.Linear:
    torch.manual_seed(seed + 7)
    return nn.Linear(size, V).to(DT)


def gmean(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Geometric mean along dim: exp(mean(log t))."""
    return t.log().mean(dim).exp()


def input_grads(model: nn.Module, head: nn.Module, T: int, B: int, seed: int) -> torch.Tensor:
    """(B, T) ‖∂L/∂x_t‖, L = Σ_b CE at the last position (every example its own gradient)."""
    x, y = _inputs(B, T, seed)
    x.requires_grad_(True)
    F.cross_entropy(head(model(x)[:, -1]), y, reduction="sum").backward()
    return x.grad.norm(dim=-1)


def ratios(norms: torch.Tensor) -> dict:
    """first/last and first/median of the other non-final positions (batch geometric means)."""
    T = norms.shape[1]
    out = {"first_last": gmean(norms[:, 0] / norms[:, -1]).item()}
    if T >= 3:
        med = norms[:, 1:-1].median(dim=1).values
        out["first_median"] = gmean(norms[:, 0] / med).item()
    return out


def lstm_paths(model: nn.Module, head: nn.Module, T: int, B: int, seed: int) -> dict:
    """‖∂L/∂c_1‖/‖∂L/∂c_T‖ and ‖∂L/∂h_1‖/‖∂L/∂h_T‖ in the full LSTM, each path alone, and ∏f."""
    x, y = _inputs(B, T, seed)
    res = {}
    ratio = lambda seq: gmean(seq[0].grad.norm(dim=-1) / seq[-1].grad.norm(dim=-1)).item()
    for block in (None, "h", "c"):  # the full model; the cell path alone; the hidden path alone
        (rec,) = unroll(model.core, x, block=block, retain_grad=True).steps
        F.cross_entropy(head(rec.h[-1]), y, reduction="sum").backward()
        if block is None:
            res["c_total"], res["h_total"] = ratio(rec.c), ratio(rec.h)
            f = torch.stack(rec.gates["f"]).detach()  # (T, B, H)
            res["prod_f"] = (f[1:].prod(0) if T > 1 else torch.ones_like(f[0])).mean().item()
        elif block == "h":  # cell path alone: ∂L/∂c_1 = ∂L/∂c_T ⊙ ∏_{t=2}^T f_t
            res["c_only"] = ratio(rec.c)
        else:
            res["h_only"] = ratio(rec.h)
    return res


def forget_profile(model: nn.Module, T: int, B: int, seed: int) -> list[float]:
    """(T,) ∏_{k=t+1}^{T} f_k, averaged over batch and units: the notes' ∏f_t overlay."""
    x, _ = _inputs(B, T, seed)
    with torch.no_grad():
        (rec,) = unroll(model.core, x).steps
    f = torch.stack(rec.gates["f"])  # (T, B, H)
    tail, prods = torch.ones_like(f[0]), []
    for t in range(T - 1, -1, -1):
        prods.append(tail.mean().item())
        tail = tail * f[t]
    return prods[::-1]


def path_length(model: nn.Module, T: int, seed: int) -> int:
    """Sequential cell applications between x_1 and y_T: 1 + the smallest truncated-BPTT window
    k (state-to-state steps kept) for which ∂L/∂x_1 ≠ 0, found by bisection."""
    x, y = _inputs(1, T, seed)
    head = _head(seed)

    def reaches(k: int) -> bool:
        xx = x.clone().requires_grad_(True)
        out = unroll(model.core, xx, window=k).output
        F.cross_entropy(head(out[:, -1]), y, reduction="sum").backward()
        return xx.grad is not None and bool(xx.grad[:, 0].abs().max() > 0)

    if reaches(T - 1) and not reaches(T - 2):  # the expected answer, checked in two runs
        return T
    lo, hi = 0, T
    if not reaches(hi):
        return -1
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi + 1


def attention_hops(model: nn.Module, T: int, seed: int) -> int:
    """Layers needed for ∂L/∂x_1 ≠ 0 at y_T: 1 when a single layer connects them."""
    x, y = _inputs(2, T, seed)
    x.requires_grad_(True)
    F.cross_entropy(_head(seed)(model(x)[:, -1]), y, reduction="sum").backward()
    return 1 if bool(x.grad[:, 0].abs().max() > 0) else -1


def demo_ratio(kind: str, seed: int, B: int) -> float:
    """The notes' demo (Section 3.1): nn.RNN/LSTM(32, 64) at default init, T = 100, loss =
    Σ output[:, −1]; ‖∂L/∂x_1‖/‖∂L/∂x_100‖, batch geometric mean."""
    seed_everything(seed + 11)
    layer = (RNN if kind == "rnn" else LSTM)(32, 64, batch_first=True, dtype=DT)
    x, _ = _inputs(B, DEMO_T, seed, 32)
    x.requires_grad_(True)
    layer(x)[0][:, -1].sum().backward()
    n = x.grad.norm(dim=-1)
    return gmean(n[:, 0] / n[:, -1]).item()


def stack_grads(T: int, B: int, seed: int, layers: int = 3) -> tuple[list, float, str]:
    """(layers, T) batch-mean ‖∂L/∂h_t^l‖ in a 3-layer LSTM at default init from rnnlab.trace,
    its largest relative difference from retain_grad on a step-by-step unrolling, fingerprint."""
    seed_everything(seed)
    lstm = LSTM(H, H, num_layers=layers, batch_first=True, dtype=DT)
    fp = fingerprint(lstm)
    x, y = _inputs(B, T, seed)
    head = _head(seed)
    with trace(lstm) as tr:
        out, _ = lstm(x)
        F.cross_entropy(head(out[:, -1]), y, reduction="sum").backward()
    telemetry = tr.grad_h.detach()
    recs = unroll(lstm, x, retain_grad=True).steps
    F.cross_entropy(head(recs[-1].h[-1]), y, reduction="sum").backward()
    ref = torch.tensor([[h.grad.norm(dim=-1).mean().item() for h in rec.h] for rec in recs],
                       dtype=DT)
    diff = ((telemetry - ref).abs() / ref.abs().clamp_min(1e-300)).max().item()
    return [[sig(v, 4) for v in row] for row in telemetry.tolist()], diff, fp


def run_one(spec) -> dict:
    s, seed = spec.settings, spec.seed
    lengths, B = s["lengths"], s["B"]
    if s["model"] in ("mingru", "minlstm", "lru"):
        out = run_scan(spec, H, DT, _inputs, _head, input_grads, ratios)
        return {k: v if k in ("init_fingerprint", "lengths") else [sig(x, 6) for x in v]
                if isinstance(v, list) else sig(v, 4) for k, v in out.items()}
    if s["model"] == "lstm-stack":
        grads, diff, fp = stack_grads(s["T_stack"], B, seed)
        return {"init_fingerprint": fp, "T": s["T_stack"], "grad_h": grads,
                "max_rel_diff_vs_retain_grad": sig(diff, 3),
                "first_last_by_layer": [sig(r[0] / r[-1], 4) for r in grads]}
    model, fp = build(s["model"], s["setting"], seed, max(lengths))
    head = _head(seed)
    per_T = {T: ratios(input_grads(model, head, T, B, seed)) for T in lengths}
    out = {"init_fingerprint": fp, "lengths": lengths,
           "first_last": [sig(per_T[T]["first_last"], 4) for T in lengths],
           "first_median": [sig(per_T[T].get("first_median"), 4) for T in lengths]}
    out["factor"] = sig(decay_factor(lengths, out["first_last"]), 5)
    out["median_slope"] = sig(loglog_slope([T for T in lengths if T >= 3],
                                           [v for T, v in zip(lengths, out["first_median"],
                                                              strict=True) if T >= 3]), 4)
    prof = input_grads(model, head, T_CURVE, B, seed)
    out["profile"] = [sig(v, 4) for v in gmean(prof / prof[:, -1:], 0).tolist()]
    if s["model"] == "lstm":
        rows = [lstm_paths(model, head, T, B, seed) for T in lengths]
        out["paths"] = {k: [sig(r[k], 4) for r in rows] for k in rows[0]}
        out["path_factor"] = {k: sig(decay_factor(lengths, v), 5)
                              for k, v in out["paths"].items()}
        out["prod_f_profile"] = [sig(v, 4) for v in forget_profile(model, T_CURVE, B, seed)]
    if s["setting"] == "theory":
        hops = attention_hops if s["model"].startswith("attention") else path_length
        out["path_length"] = [hops(model, T, seed) for T in lengths]
    if s["model"] == "rnn":  # ‖∂L/∂h_1‖/‖∂L/∂h_T‖, beside the scan layers' state ratio
        out["state_first_last"] = [sig(state_ratio(model.core, head, *_inputs(B, T, seed)), 4)
                                   for T in lengths]
    if s["setting"] == "default" and s["model"] in ("rnn", "lstm"):
        out["demo_ratio"] = sig(demo_ratio(s["model"], seed, B), 4)
    return out
