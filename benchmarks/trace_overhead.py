"""What does telemetry while training cost? A char-LSTM on the shipped Shakespeare, trained with
``rnnlab.train.fit`` untraced and with ``trace_every=N``, from the same seed, in one run.

A traced step (steps 1, N, 2N, ...) runs inside ``rnnlab.trace``: rnnlab's own BPTT engine with
its telemetry taps instead of torch's fused kernel, and the summary copied to the CPU; every
other step is an ordinary one. So the overhead of ``trace_every=N`` should be about
(c − 1)/N, c the cost of a traced step in untraced steps.

    python benchmarks/trace_overhead.py                      # N = 10 and 100, 200 steps each
    python benchmarks/trace_overhead.py --every 1,10,100 --repeats 5 --threads 1

Steps 2..S are timed (step 1 is traced in every arm and warms up the allocator); the arms run
interleaved, ``--repeats`` times, and the median is reported, so that a busy machine slows all
arms alike.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from rnnlab import models, train
from rnnlab.data import build_task


def timed_steps(task, args, every: int) -> float:
    """Seconds for steps 2..S of one fit (step times come from the step records)."""
    cfg = train.TrainConfig(steps=args.steps, batch_size=args.batch, eval_every=0,
                            eval_batches=1, trace_every=every, seed=args.seed, decay="none")
    h = train.fit(lambda: models.build("lm", vocab_size=task.vocab_size, backbone="lstm",
                                       hidden_size=args.hidden, num_layers=args.layers),
                  task, cfg)
    assert len(h.telemetry) == (0 if every == 0 else 1 + args.steps // every - (every == 1))
    return h.records[-1]["time"] - h.records[0]["time"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", default="10,100", help="trace_every values, comma-separated")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    task = build_task("shakespeare", seq_len=args.seq_len)
    arms = [0] + [int(v) for v in args.every.split(",")]
    times: dict[int, list[float]] = {n: [] for n in arms}
    for _ in range(args.repeats):
        for n in arms:  # interleaved: a slow moment of the machine hits every arm
            times[n].append(timed_steps(task, args, n))
    med = {n: statistics.median(v) for n, v in times.items()}
    timed = args.steps - 1
    base = med[0] / timed
    print(f"char-LSTM: {args.layers} × LSTM({args.hidden}), batch {args.batch}, "
          f"T = {args.seq_len}, steps 2..{args.steps} timed, median of {args.repeats}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'trace_every':>12} {'s/step':>9} {'overhead':>9} {'traced steps':>13} "
          f"{'traced step cost':>17}")
    print(f"{'off':>12} {base:9.4f} {'':>9} {0:13d} {'':>17}")
    out = {"untraced_s_per_step": base, "arms": {}}
    for n in arms[1:]:
        traced = sum(1 for s in range(2, args.steps + 1) if s % n == 0)
        over = med[n] / med[0] - 1
        cost = 1 + (med[n] - med[0]) / max(traced, 1) / base  # in untraced steps
        print(f"{n:12d} {med[n] / timed:9.4f} {over:9.1%} {traced:13d} {cost:15.2f} ×")
        out["arms"][n] = {"s_per_step": med[n] / timed, "overhead": over,
                          "traced_step_cost": cost}
    print("traced step cost: one traced step in untraced steps (1 + extra time / traced steps)")
    return out


if __name__ == "__main__":
    main()
