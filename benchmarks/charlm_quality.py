"""Does rnnlab learn as well per step as plain PyTorch? A char-LM on the shipped Shakespeare.

Both models: embedding 256 -> 2-layer LSTM (hidden 256) -> linear, batch 32, windows of 128
characters, Adam (lr 2e-3), gradient clipping at global norm 1, the same seed and the very same
training batches, 600 steps. rnnlab is trained with ``rnnlab.train.fit`` on
``models.build("lm", backbone="lstm")``; the reference is a dozen lines of torch.nn.LSTM and a
textbook loop. Both are then scored on the same validation windows (nats per character).
rnnlab runs twice: with its default backend (torch's fused kernel on rnnlab's parameters: it
should match the reference to the last digit) and on its own explicit BPTT engine
(``backend="engine"``: equal up to float32 rounding, which grows over 600 steps of training).

    python benchmarks/charlm_quality.py                  # all three arms, one after the other
    python benchmarks/charlm_quality.py --only torch --json torch.json   # one side
    python benchmarks/charlm_quality.py --combine rnnlab.json torch.json

rnnlab passes when its validation nats/char is at most the reference's (+ --tolerance).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab import models, train
from rnnlab.data import build_task


class TorchCharLM(nn.Module):
    """The plain-PyTorch reference: embedding -> torch.nn.LSTM -> linear."""

    def __init__(self, vocab: int, hidden: int, layers: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, x):
        h, _ = self.lstm(self.embedding(x))
        return self.decoder(h)


def train_torch(task, args, log) -> nn.Module:
    torch.manual_seed(args.seed)
    model = TorchCharLM(task.vocab_size, args.hidden, args.layers)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)  # the same batches as rnnlab.train.fit
    model.train()
    for step in range(1, args.steps + 1):
        b = task.batch("train", args.batch_size, gen, args.seq_len)
        loss = F.cross_entropy(model(b.x).flatten(0, 1), b.y.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        log(step, loss.item())
    return model


ARMS = ("rnnlab", "rnnlab-engine", "torch")


class _Log:
    def __init__(self, log):
        self.log = log

    def on_step(self, trainer, rec, last):
        self.log(rec["step"], rec["loss"])


def train_rnnlab(task, args, log, backend: str = "auto") -> nn.Module:
    def build():  # called by fit after seeding with args.seed, as the torch arm is built
        model = models.build("lm", vocab_size=task.vocab_size, backbone="lstm",
                             hidden_size=args.hidden, num_layers=args.layers)
        model.backbone.backend = backend  # "auto": torch's fused kernel; "engine": rnnlab's
        return model

    history = train.fit(build, task, steps=args.steps, batch_size=args.batch_size,
                        optimizer="adam", lr=args.lr, clip=args.clip, decay="none",
                        tbptt="random", eval_every=0, eval_batches=1, seed=args.seed,
                        callbacks=[_Log(log)])
    return history.model


@torch.no_grad()
def val_nats(model: nn.Module, task, args) -> float:
    """Mean nats per character over the same fixed validation windows for both models."""
    model.eval()
    gen = torch.Generator().manual_seed(12345)
    total, n = 0.0, 0
    for _ in range(args.val_batches):
        b = task.batch("val", args.batch_size, gen, args.seq_len)
        out = model(b.x)
        logits = out[0] if isinstance(out, tuple) else out
        total += float(F.cross_entropy(logits.flatten(0, 1), b.y.flatten(), reduction="sum"))
        n += b.y.numel()
    return total / n


def run_one(which: str, task, args) -> dict:
    t0 = time.perf_counter()

    def log(step, loss):
        if step % args.log_every == 0 or step == 1:
            print(f"[{which}] step {step:4d}  train loss {loss:.4f}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    if which == "torch":
        model = train_torch(task, args, log)
    else:
        model = train_rnnlab(task, args, log, "engine" if which == "rnnlab-engine" else "auto")
    seconds = time.perf_counter() - t0
    nats = val_nats(model, task, args)
    print(f"[{which}] val nats/char {nats:.4f}  ({nats / math.log(2):.4f} bits/char), "
          f"{seconds:.0f} s training", flush=True)
    return {"which": which, "val_nats_per_char": nats, "val_bits_per_char": nats / math.log(2),
            "train_seconds": seconds, "steps": args.steps, "threads": torch.get_num_threads()}


def report(results: dict, tolerance: float) -> int:
    t = results["torch"]["val_nats_per_char"]
    steps = results["torch"]["steps"]
    print(f"validation nats/char after {steps} steps: torch.nn {t:.4f}")
    ok = True
    for name, d in results.items():
        if name != "torch":
            r = d["val_nats_per_char"]
            ok &= r <= t + tolerance
            print(f"  {name:14s} {r:.4f}  (difference {r - t:+.4f})")
    print("PASS: rnnlab learns at least as well per step" if ok else
          "FAIL: rnnlab is behind the plain torch.nn char-LM")
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-batches", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="rnnlab may be this many nats/char behind (seed noise) and still pass")
    p.add_argument("--only", choices=ARMS, default=None,
                   help="one arm; rnnlab: the default backend (torch's fused kernel on "
                        "rnnlab's parameters), rnnlab-engine: rnnlab's explicit BPTT engine")
    p.add_argument("--json", default=None, help="write the result(s) here")
    p.add_argument("--combine", nargs="+", metavar="JSON", default=None,
                   help="compare two results written by --only ... --json")
    args = p.parse_args(argv)
    if args.combine:
        results = {}
        for path in args.combine:
            with open(path) as f:
                d = json.load(f)
            results[d["which"]] = d
        return report(results, args.tolerance)
    if args.threads:
        torch.set_num_threads(args.threads)
    task = build_task("shakespeare", seq_len=args.seq_len)
    sides = [args.only] if args.only else list(ARMS)
    results = {w: run_one(w, task, args) for w in sides}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results[args.only] if args.only else results, f, indent=2)
    return report(results, args.tolerance) if "torch" in results and len(results) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
