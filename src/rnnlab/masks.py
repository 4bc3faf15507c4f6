"""Lengths to masks: the one helper that turns valid lengths into a boolean mask.

A leaf (imports torch only), so that every layer can use it: the engine and the telemetry (per-step
batch sizes of a PackedSequence), attention (key padding masks) and the data batches.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(N,) lengths -> (N, max_len) bool mask, True at positions j < lengths[n] (the valid ones).

    max_len defaults to the longest length. Used along time (sequence lengths -> (B, T)) and
    along the batch (a PackedSequence's batch sizes per step -> (T, B): the rows active at t).
    """
    T = int(lengths.max()) if max_len is None else max_len
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]  # m[n, j] = j < len_n
