"""Forward + backward time of the parallel scan against the sequential step loop, from one run.

    python benchmarks/scan.py                       # B=32, H=I=64, T ∈ {128, 1024, 4096}, CPU
    python benchmarks/scan.py --threads 1 --clock cpu   # steadier on a shared, busy machine
    python benchmarks/scan.py --device cuda

For rnnlab.MinGRU, MinLSTM and LRU (float32), one training step, ``output.backward(grad)`` with a
fixed random ``grad``, run with the layer's ``scan="sequential"`` (the step equations in a Python
loop: T dependent steps, each a handful of small ops, autograd recording every one) and
``scan="parallel"`` (rnnlab.scan: recursive doubling in O(log T) rounds of whole-sequence
elementwise work, and a backward that is one more scan). minGRU and minLSTM are also timed with
``log_space=False``: the paper's log-space scan (Heinsen's logcumsumexp, two transcendental
functions per element) against the plain linear scan of the same recurrence. The variants
alternate within every round and each keeps its best of ``--repeats`` rounds.

"ratio" = sequential ms / parallel ms (> 1: the scan is faster); "µs/step" = ms / T, which a
scan keeps flat as T grows while the loop's per-step cost is fixed overhead. On a CPU the scan's
gain is fewer, larger operations (no per-step Python and autograd overhead), not parallel depth:
two cores cannot run T/2 products at once, and the scan does about twice the loop's arithmetic.

``--heap`` (glibc only): at T = 4096 every (T, B, H) float32 tensor is 32 MB, and glibc serves
blocks that large with a fresh mmap whose pages fault in (zeroed by the kernel) on first touch,
every time: the parallel path, which allocates whole-sequence tensors, pays that on each of them,
the loop's small per-step tensors do not. ``--heap`` raises glibc's mmap and trim thresholds
(mallopt) so that freed blocks are reused, which shows the computation without that cost.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import rnnlab

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import time_variants  # noqa: E402  (the same interleaved best-of-rounds timer)

LAYERS = {"MinGRU": rnnlab.MinGRU, "MinLSTM": rnnlab.MinLSTM, "LRU": rnnlab.LRU}


def keep_on_heap() -> bool:
    """glibc: serve large blocks from the heap and keep freed memory (M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD = 1 GiB). False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 30)) and bool(libc.mallopt(-1, 1 << 30))
    except (OSError, AttributeError):
        return False


def make_step(layer, x, grad, scan: str, log_space: bool | None = None):
    """One training step with the layer's ``scan`` (and ``log_space``) set as asked."""
    def step():
        layer.scan = scan
        if log_space is not None:
            layer.log_space = log_space
        layer.zero_grad(set_to_none=True)
        layer(x)[0].backward(grad)
    return step


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="rounds per variant (best is kept)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or the process's CPU time (with --threads 1)")
    ap.add_argument("--layers", default="MinGRU,MinLSTM,LRU")
    ap.add_argument("--steps", default="128,1024,4096", help="sequence lengths T")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64, help="H = I")
    ap.add_argument("--heap", action="store_true",
                    help="glibc: reuse freed large blocks instead of fresh page-faulting mmaps")
    args = ap.parse_args(argv)
    heap = args.heap and keep_on_heap()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    B, H = args.batch, args.hidden
    table = Table(title=f"forward + backward, parallel scan vs sequential loop: B={B}, "
                        f"H=I={H}, float32, {device}, {torch.get_num_threads()} thread(s), "
                        f"{args.clock} clock" + (", large blocks kept on the heap" if heap
                                                 else ""))
    for col in ("layer", "T", "sequential ms", "parallel ms", "ratio\nseq / par",
                "sequential\nµs/step", "parallel\nµs/step", "parallel ms\nlinear scan",
                "ratio\nseq / linear"):
        table.add_column(col, justify="right")
    for name in args.layers.split(","):
        layer = LAYERS[name](H, H, device=device)
        minrnn = name != "LRU"
        for T in map(int, args.steps.split(",")):
            x = torch.randn(T, B, H, device=device)
            grad = torch.randn(T, B, H, device=device)
            variants = {"sequential": make_step(layer, x, grad, "sequential"),
                        "parallel": make_step(layer, x, grad, "parallel", True if minrnn
                                              else None)}
            if minrnn:
                variants["linear"] = make_step(layer, x, grad, "parallel", False)
            secs = time_variants(variants, device, args.repeats, 1, clock)
            seq, par = secs["sequential"], secs["parallel"]
            lin = secs.get("linear")
            table.add_row(name + (" (log space)" if minrnn else ""), str(T),
                          f"{seq * 1e3:.1f}", f"{par * 1e3:.1f}", f"{seq / par:.2f}",
                          f"{seq / T * 1e6:.1f}", f"{par / T * 1e6:.1f}",
                          "" if lin is None else f"{lin * 1e3:.1f}",
                          "" if lin is None else f"{seq / lin:.2f}")
    Console(width=170).print(table)


if __name__ == "__main__":
    main()
