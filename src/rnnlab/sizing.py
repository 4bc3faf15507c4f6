"""Will it fit? The memory a model and its batches need, known before anything is allocated.

A model is first built on PyTorch's "meta" device (shapes, no storage), so a request for a
layer of 10^5 units or a batch of 10^9 rows is answered with a sentence, not with the kernel's
out-of-memory killer. The estimate, in bytes (s = bytes per element of the model's dtype)::

    parameters   P·s·(2 + k)       weights and gradients, and k optimiser moments per weight
                                   (Adam, AdamW: 2; SGD without momentum: 0)
    activations  B·T·w·s           w per step and row: the outputs of every Linear and Embedding
                                   (the language model's logits, V wide, counted ×3: logits,
                                   softmax, gradient), 2·G·H per recurrent layer and direction
                                   (G gate blocks: RNN 1, GRU 3, LSTM 4; pre-activations and
                                   activations), and 2·heads·T per attention layer (scores, softmax)

It is a lower bound of what training holds at its peak (it leaves out temporaries and the
allocator's slack), so a refusal is never a false alarm; ``check`` compares it with what the
device has free (CPU: MemAvailable; CUDA: ``torch.cuda.mem_get_info``).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .attention import AttentionStack
from .errors import UserError
from .layers import RNNBase

_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_MOMENTS = {"adam": 2, "adamw": 2, "sgd": 0}


def human(n: float) -> str:
    """Bytes as 1.5 GiB, 320.0 MiB, ... (beyond PiB: 1.2e+22 bytes)."""
    if n >= 1024**6:
        return f"{n:.1e} bytes"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def meta_model(build, **options) -> nn.Module:
    """``build(**options)`` on the meta device (no memory); an init that needs real values
    (a spectral radius computed from eigenvalues) is skipped: the shapes are the same."""
    with torch.device("meta"):
        try:
            return build(**options)
        except (RuntimeError, NotImplementedError):
            if options.get("spectral_radius") is None:
                raise
            return build(**{**options, "spectral_radius": None})


def width(model: nn.Module, T: int, per_step_outputs: bool) -> int:
    """w: activation elements per step and row (module doc)."""
    w = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            w += m.out_features
        elif isinstance(m, nn.Embedding):
            w += m.embedding_dim
        elif isinstance(m, RNNBase):
            D = 2 if m.bidirectional else 1
            w += 2 * _GATES.get(m.mode, 4) * m.hidden_size * m.num_layers * D
        elif isinstance(m, AttentionStack):
            w += 2 * m.num_heads * T * m.num_layers
    if per_step_outputs:  # logits, softmax and its gradient, V wide each
        w += 2 * next((m.out_features for m in reversed(list(model.modules()))
                       if isinstance(m, nn.Linear)), 0)
    return w


def estimate(model: nn.Module, batch_size: int, seq_len: int, *, optimizer: str | None = "adam",
             per_step_outputs: bool = True, dtype: torch.dtype = torch.float32) -> dict:
    """{"total", "parameters", "activations", "num_parameters"} in bytes (module doc)."""
    s = torch.empty((), dtype=dtype).element_size()
    P = sum(p.numel() for p in model.parameters())
    k = 0 if optimizer is None else _MOMENTS.get(optimizer, 2)
    params = P * s * ((2 + k) if optimizer is not None else 1)
    acts = batch_size * seq_len * width(model, seq_len, per_step_outputs) * s
    return {"total": params + acts, "parameters": params, "activations": acts,
            "num_parameters": P}


def available(device: torch.device) -> int | None:
    """Bytes free for tensors on ``device`` (None when the system does not say)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check(need: dict, device: torch.device, what: str, hint: str) -> None:
    """UserError when ``need["total"]`` bytes exceed what ``device`` has free."""
    free = available(device)
    if free is None or need["total"] <= free:
        return
    raise UserError(f"{what} needs about {human(need['total'])} of memory "
                    f"({need['num_parameters']:,} parameters: {human(need['parameters'])}; "
                    f"activations: {human(need['activations'])}) but {device.type} has "
                    f"{human(free)} free; {hint}")
