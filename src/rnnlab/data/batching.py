"""Batches: padding with masks and lengths, the masked loss, packing, contiguous streams.

A ``Batch`` carries everything one training step needs. Sequences of different lengths are
padded to the longest one; ``mask`` marks the positions that count in the loss and ``lengths``
the valid input lengths, so the loss over a padded batch is

    L = Σ_t m_t · ℓ_t / Σ_t m_t                       (masked_mean)

and changing anything at a padded position changes nothing. For stateful truncated BPTT a long
token stream is cut into B parallel rows (``batchify``): row b is one contiguous piece of the
text, and chunk k+1 of row b continues chunk k of row b exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from ..masks import lengths_to_mask

__all__ = ["Batch", "masked_mean", "lengths_to_mask", "pad", "pack", "batchify"]


@dataclass
class Batch:
    """One batch, batch-first.

    x:        (B, T) long token ids, or (B, T, F) float features (adding problem)
    y:        lm/tagging (B, T) long; classify (B,) long; regress (B,) float;
              seq2seq (B, T_out) long target tokens (ending with EOS, then PAD)
    mask:     (B, T) or (B, T_out) bool, positions that count in the loss (None: all of them)
    lengths:  (B,) long valid input lengths (None: all T valid)
    dep_mask: (B, T) bool, targets fixed by a cue long before (a13, copy memory)
    distance: (B, T) long, the distance back to that cue at dep_mask positions (0 elsewhere)
    y_in:     seq2seq decoder input, BOS followed by y shifted right, (B, T_out)
    """

    x: Tensor
    y: Tensor
    mask: Tensor | None = None
    lengths: Tensor | None = None
    dep_mask: Tensor | None = None
    distance: Tensor | None = None
    y_in: Tensor | None = None

    def to(self, device, dtype: torch.dtype | None = None) -> Batch:
        """A copy with every tensor on ``device`` (``lengths`` stays where it is: packing
        wants it on the CPU), floating-point ones in ``dtype`` when given."""
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor) and f.name != "lengths":
                to = dtype if dtype is not None and v.is_floating_point() else None
                v = v.to(device, to, non_blocking=True)
            moved[f.name] = v
        return replace(self, **moved)

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]


def masked_mean(loss_per_pos: Tensor, mask: Tensor | None) -> Tensor:
    """L = Σ m·ℓ / Σ m over all positions; a plain mean when ``mask`` is None.

    ``loss_per_pos`` and ``mask`` have the same shape (e.g. (B, T)). Padded positions are
    removed with ``torch.where`` rather than multiplied by 0, so even a NaN or inf loss at a
    padded position cannot leak into the result.
    """
    if mask is None:
        return loss_per_pos.mean()
    keep = mask.to(device=loss_per_pos.device, dtype=torch.bool)
    kept = torch.where(keep, loss_per_pos, torch.zeros_like(loss_per_pos))  # m·ℓ, NaN-safe
    return kept.sum() / keep.sum().clamp_min(1).to(loss_per_pos.dtype)      # Σ m·ℓ / Σ m


def pad(seqs: list[list[int]] | list[Tensor], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D sequences to the longest one -> ((B, T) long padded, (B,) long lengths)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    T = int(lengths.max()) if len(seqs) else 0
    out = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out, lengths


def pack(x_embedded: Tensor, lengths: Tensor) -> PackedSequence:
    """Pack a padded batch-first (B, T, D) tensor so a recurrent layer skips the padding.

    Thin wrapper over ``torch.nn.utils.rnn.pack_padded_sequence(batch_first=True,
    enforce_sorted=False)``; undo it with ``pad_packed_sequence(..., batch_first=True)``.
    """
    return pack_padded_sequence(x_embedded, lengths.to("cpu"), batch_first=True,
                                enforce_sorted=False)


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-D token stream into ``batch_size`` contiguous rows -> (B, N), N = len // B.

    Row b is ids[b·N : (b+1)·N]; the last len % B tokens are dropped. Reading the rows in
    chunks of seq_len along dim 1 gives the contiguous batches of stateful truncated BPTT.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    N = ids.numel() // batch_size
    return ids[: N * batch_size].view(batch_size, N)
