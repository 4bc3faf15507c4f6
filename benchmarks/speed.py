"""Training-step throughput of rnnlab's RNN / LSTM / GRU against torch.nn, from one run.

    python benchmarks/speed.py                      # defaults: CPU, torch's thread count
    python benchmarks/speed.py --repeats 9 --threads 1
    python benchmarks/speed.py --device cuda        # on a GPU: against cuDNN
    python benchmarks/speed.py --threads 1 --clock cpu   # on a shared machine (see below)

For each configuration (LSTM / GRU / RNN × H ∈ {64, 256}, B = 32, T = 128, I = H, float32) it
times one training step, forward + backward (``output.backward(grad)`` with a fixed random
``grad``, so every step and every weight gets a gradient), for

- torch.nn          the reference (on CPU: oneDNN's fused LSTM, native GRU / RNN; cuDNN on GPU),
- untraced          rnnlab, ``backend="auto"``: torch's fused kernels on rnnlab's own Parameters,
- engine            rnnlab's explicit BPTT engine untraced (``backend="engine"``; on CPU its native
                    kernels, on CUDA its Python loops),
- traced native     inside ``rnnlab.trace``: the engine recording the per-step gradient norms and
                    gate statistics, on its native CPU kernels (``RNNLAB_KERNELS=native``),
- traced Python     the same on the engine's Python loops (``RNNLAB_KERNELS=python``; what CUDA
                    runs),

all holding the same weights; each cell shows ms and, in brackets, the ratio torch.nn ÷ it
(> 1: faster than torch.nn). The variants are interleaved within every round and each one's best
round of ``--repeats`` is kept (the machine may be shared: the best round is the least disturbed).
``--clock cpu`` times with the process's CPU time instead of the wall clock: with one thread it
is the compute time even when other jobs share the cores (with several threads it would also
count the threads' idle spinning, so keep it to ``--threads 1``). On a machine shared with other
jobs the wall-clock numbers with several threads swing widely (every parallel op waits for a busy
core): prefer ``--threads 1 --clock cpu`` there. About a minute on 2 idle cores with the defaults.
GFLOP/s counts 24·H·(I+H)·B·T floating-point operations per LSTM step (forward, backward to the
data and to the weights: three GEMM passes over 4 gate blocks), 18· for the GRU, 6· for the RNN,
and is compared with a large (2048²) float32 GEMM timed in the same run ("% peak").

"GEMMs alone" times only the matrix products the Python engine makes for one training step,
with the engine's shapes and ``rnnlab.gemm``'s kernel choice: the input projection of all steps, one
recurrent product per step forward and one backward, ∂L/∂x, ∂L/∂W_ih and ∂L/∂W_hh.
torch.nn ms ÷ that time ("bound") is the ceiling of the traced Python ratio: everything between it
and the traced Python ratio is the steps' pointwise work and per-op overhead. The native kernels
make their per-step products in their own register-blocked loop with the cell's step fused in
(``rnnlab/kernels``), several times faster than a BLAS call at these shapes, so they can beat it.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from rich.console import Console
from rich.table import Table

import rnnlab
from rnnlab import gemm, native

FLOPS_PER = {"LSTM": 24, "GRU": 18, "RNN": 6}  # × H·(I+H)·B·T per forward+backward step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(device: torch.device, clock, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large float32 matrix product, the machine's practical peak: the better of
    torch.mm (BLAS) and rnnlab.gemm.linear (oneDNN on CPU)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for f in (lambda: a @ b, lambda: gemm.linear(a, b)):
        f()
        for _ in range(repeats):
            _sync(device)
            t0 = clock()
            f()
            _sync(device)
            best = min(best, clock() - t0)
    return 2 * n**3 / best / 1e9


def make_step(module, x, grad, traced: bool, kernels: str = "auto"):
    """One training step: forward, then backward from ``grad``, on the engine path ``kernels``
    (RNNLAB_KERNELS) where the engine runs."""
    def step():
        os.environ[native.ENV] = kernels
        module.zero_grad(set_to_none=True)
        if traced:
            with rnnlab.trace(module):
                module(x)[0].backward(grad)
        else:
            module(x)[0].backward(grad)
    return step


def gemms_alone(mode: str, I: int, H: int, B: int, T: int, device):
    """One training step's matrix products, nothing else: see the module docstring."""
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[mode] * H
    w_ih, w_hh = torch.randn(G, I, device=device), torch.randn(G, H, device=device)
    x2, h2 = torch.randn(T * B, I, device=device), torch.randn(T * B, H, device=device)
    A, DH = torch.randn(T, B, G, device=device), torch.randn(T + 1, B, H, device=device)
    a, dh, hs = A.unbind(0), DH.unbind(0), h2.view(T, B, H).unbind(0)  # a: gates, then ∂L/∂a
    fwd = gemm.adder(w_hh, gemm.is_small(H))  # y += h W_hhᵀ
    bwd = gemm.adder(w_hh.t(), gemm.is_small(H))  # y += q W_hh

    def step():
        gemm.linear(x2, w_ih)  # x W_ihᵀ, all steps
        for t in range(T):
            fwd(a[t], hs[t])
        for t in range(T - 1, -1, -1):
            bwd(dh[t], a[t])
        D = A.view(T * B, G)
        gemm.linear(D, w_ih.t())  # ∂L/∂x
        gemm.t_matmul(D, x2)  # ∂L/∂W_ih
        gemm.t_matmul(D, h2)  # ∂L/∂W_hh
    return step


def time_variants(steps: dict, device, repeats: int, iters: int,
                  clock=time.perf_counter) -> dict[str, float]:
    """Seconds per step of each variant: best of ``repeats`` interleaved rounds."""
    for f in steps.values():  # warm-up (allocator, oneDNN primitive caches)
        f()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, f in steps.items():
            _sync(device)
            t0 = clock()
            for _ in range(iters):
                f()
            _sync(device)
            best[name] = min(best[name], (clock() - t0) / iters)
    return best


def _row(secs: dict[str, float], gflop: float, peak: float) -> list[str]:
    """The table's cells after torch.nn's ms: "ms (ratio)" per variant, then GFLOP/s."""
    def cell(name):
        if name not in secs:
            return "n/a"
        return f"{secs[name] * 1e3:.1f} ({secs['torch'] / secs[name]:.2f})"

    def rate(name):
        if name not in secs:
            return "n/a"
        g = gflop / secs[name]
        return f"{g:.0f} ({g / peak:.0%})"

    return [cell("auto"), cell("engine"), cell("native"), cell("python"), rate("torch"),
            rate("native"), cell("gemms")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds per variant (best is kept)")
    ap.add_argument("--iters", type=int, default=1, help="training steps per round")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or the process's CPU time (robust on a shared machine "
                         "with --threads 1)")
    ap.add_argument("--modes", default="LSTM,GRU,RNN")
    ap.add_argument("--sizes", default="64,256", help="hidden sizes (I = H)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=128, help="sequence length T")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    console = Console(width=170)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    before = os.environ.get(native.ENV)
    try:
        _run(args, device, clock, console)
    finally:  # the steps set RNNLAB_KERNELS: leave it as it was
        if before is None:
            os.environ.pop(native.ENV, None)
        else:
            os.environ[native.ENV] = before


def _run(args, device, clock, console) -> None:
    B, T = args.batch, args.steps
    peak = gemm_gflops(device, clock)
    has_native = device.type == "cpu" and native.available()
    table = Table(title=f"training step (fwd+bwd), B={B}, T={T}, float32, {device}, "
                        f"{torch.get_num_threads()} thread(s), {args.clock} clock; "
                        f"large GEMM {peak:.0f} GFLOP/s; ms (ratio torch.nn ÷ it)")
    for col in ("config", "torch.nn\nms", "untraced\n(fused)", "engine\nuntraced",
                "traced\nnative", "traced\nPython", "GFLOP/s torch\n(% peak)",
                "GFLOP/s traced\nnative (% peak)", "GEMMs alone\nms (bound)"):
        table.add_column(col, justify="right")
    for mode in args.modes.split(","):
        for H in map(int, args.sizes.split(",")):
            I = H
            ref = getattr(torch.nn, mode)(I, H, device=device)
            ours = getattr(rnnlab, mode)(I, H, device=device)
            ours.load_state_dict(ref.state_dict())
            engine = getattr(rnnlab, mode)(I, H, device=device, backend="engine")
            engine.load_state_dict(ref.state_dict())
            x = torch.randn(T, B, I, device=device)
            grad = torch.randn(T, B, H, device=device)
            steps = {"torch": make_step(ref, x, grad, False),
                     "auto": make_step(ours, x, grad, False)}
            steps["engine"] = make_step(engine, x, grad, False)  # native where it runs
            if has_native:
                steps["native"] = make_step(ours, x, grad, True, "native")
            steps["python"] = make_step(ours, x, grad, True, "python")
            steps["gemms"] = gemms_alone(mode, I, H, B, T, device)
            secs = time_variants(steps, device, args.repeats, args.iters, clock)
            gflop = FLOPS_PER[mode] * H * (I + H) * B * T / 1e9
            table.add_row(f"{mode} H={H}", f"{secs['torch'] * 1e3:.1f}",
                          *_row(secs, gflop, peak))
    console.print(table)


if __name__ == "__main__":
    main()
