"""parallelism's scan arm: forward + backward time against T of minGRU's parallel scan, the same
layer's sequential loop (``scan="sequential"``, the step equations one step at a time) and one
causal self-attention layer, with their FLOPs counted analytically (width d, batch B).

What two cores — one torch thread per run here — can and cannot show: minGRU's parallel mode is
Heinsen's log-space scan (rnnlab.scan.log_linear_scan): ⌈log₂ 16⌉ = 4 rounds of logaddexp inside
chunks of 16 steps (Hillis–Steele), the chunks joined by recursive doubling in 2·log₂(T/16)
rounds, so O(log T) dependent rounds in all. That depth pays only on hardware that runs a round's
elementwise work at once (a GPU). One thread executes it one element after another, so the scan
costs O(T) time as the loop does (a few times the loop's elementwise work, see
``flops_per_token``); what it wins on a CPU is fewer, larger operations — the loop pays T steps
of Python, small-tensor and autograd overhead — i.e. vectorising over T, not depth. The
O(log T) depth itself is not measurable here.
"""

from __future__ import annotations

import math

import torch

from .. import MinGRU
from ..scan import CHUNK
from ..seeding import fingerprint, seed_everything
from .common import Outputs

VARIANTS = ("scan", "loop", "attention")


def flops_per_token(kind: str, d: int, T: int) -> float:
    """Forward + backward FLOPs per position (multiply-adds count 2; backward products = 2× the
    forward's; every elementwise operation, exp and logaddexp included, counts 1). minGRU: W x for
    [z | h̃] is 2·2d·d; the recurrence a ⊙ h + b is 2d per step for the loop; the log-space scan
    does, per state element and step, a cumulative sum, a subtraction, ⌈log₂ min(16, T)⌉
    logaddexp rounds in its chunk, an addition, an exp and the chunk join (about 2): 6 + ⌈log₂ C⌉;
    each backward a reverse scan of the same size. Attention (one head, causal, computed as full
    T×T): Q, K, V, O projections 4·2d², QKᵀ and AV 2·2·T·d per query. Gate activations, softmax
    and the remaining elementwise work are left out."""
    if kind == "attention":
        return 3 * (4 * 2 * d * d + 2 * 2 * T * d)
    proj = 3 * 2 * (2 * d) * d
    rec = 2 * d if kind == "loop" else (6 + math.ceil(math.log2(min(CHUNK, T)))) * d
    return proj + 2 * rec


def time_scan(spec, fastest, fwd_bwd, attention) -> dict:
    """Per T: the fastest CPU seconds of a forward + backward of each variant (same inputs);
    ``attention(d)`` builds the attention layer the study's other arm times."""
    s = spec.settings
    seed_everything(spec.seed)
    d, B = s["scan_d"], s["scan_B"]
    scan = Outputs(MinGRU(d, d, batch_first=True, scan="parallel"))
    loop = Outputs(MinGRU(d, d, batch_first=True, scan="sequential"))
    loop.load_state_dict(scan.state_dict())  # the same layer, run the other way
    layers = {"scan": scan, "loop": loop, "attention": attention(d)}
    fp = fingerprint(scan)
    g = torch.Generator().manual_seed(spec.seed)
    times = {k: [] for k in layers}
    for T in s["scan_lengths"]:
        x = torch.randn(B, T, d, generator=g)
        for k, m in layers.items():
            times[k].append(fastest(fwd_bwd(m, x), s["repeats"], s["budget_s"]))
    L = s["scan_lengths"]
    per_token = {k: [t / (B * T) for t, T in zip(v, L, strict=True)] for k, v in times.items()}
    return {"init_fingerprint": fp, "scan_lengths": L, "scan_width": d, "scan_batch": B,
            "scan_s": times, "per_token_us": {k: [1e6 * x for x in v]
                                              for k, v in per_token.items()},
            "flops_per_token": {k: [flops_per_token(k, d, T) for T in L] for k in layers},
            "log2_T": [math.log2(T) for T in L]}
