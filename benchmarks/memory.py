"""Activation memory of rnnlab's traced engine against torch.nn, from one run.

    python benchmarks/memory.py            # B=32, T=128, I=H ∈ {64, 256}, float32, CPU
    python benchmarks/memory.py --device cuda

Activation memory = the bytes of every tensor autograd keeps for the backward pass (recorded with
``torch.autograd.graph.saved_tensors_hooks`` during one forward), each storage counted once and
the parameters left out. For torch.nn this is what its kernel saves (on CPU, oneDNN's workspace
for the LSTM); for rnnlab the engine's time-major buffers (gates, h_t and c_t slots, tanh(c_t)
or the GRU's W_hn h_{t-1} + b_hn) under ``rnnlab.trace``. Printed in units of T·B·H floats and as
the ratio rnnlab / torch.nn (the target is ≤ 1.25).
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table

import rnnlab


def saved_bytes(module: torch.nn.Module, x: torch.Tensor, traced: bool) -> int:
    """Bytes of the distinct non-parameter storages saved for backward by one forward."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if traced:
            with rnnlab.trace(module):
                out = module(x)[0]
        else:
            out = module(x)[0]
    del out
    return sum(storages.values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--layers", type=int, default=1)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    B, T = args.batch, args.steps
    table = Table(title=f"activation memory saved for backward, B={B}, T={T}, "
                        f"{args.layers} layer(s), float32, {device}")
    for col in ("config", "torch.nn MiB", "rnnlab traced MiB", "torch.nn\n(T·B·H floats)",
                "rnnlab\n(T·B·H floats)", "ratio"):
        table.add_column(col, justify="right")
    for mode in ("LSTM", "GRU", "RNN"):
        for H in map(int, args.sizes.split(",")):
            ref = getattr(torch.nn, mode)(H, H, args.layers, device=device)
            ours = getattr(rnnlab, mode)(H, H, args.layers, device=device)
            x = torch.randn(T, B, H, device=device)
            a, b = saved_bytes(ref, x, False), saved_bytes(ours, x, True)
            unit = T * B * H * x.element_size()
            table.add_row(f"{mode} H={H}", f"{a / 2**20:.1f}", f"{b / 2**20:.1f}",
                          f"{a / unit:.2f}", f"{b / unit:.2f}", f"{b / a:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
