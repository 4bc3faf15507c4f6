"""Random states: seed everything, capture and restore it, fingerprint a model's weights.

A run is reproducible when its model is *built after* ``seed_everything(seed)`` (the same seed
then gives the same initial weights whatever ran before) and when every random stream (python,
numpy, torch CPU and CUDA, the data generator) is saved in its checkpoints (``rng_state``) and
restored on resume (``set_rng_state``). ``fingerprint(model)`` is a short hash of the weights:
two arms of a comparison built from one seed show the same fingerprint where they share their
initial weights.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and all CUDA devices), python ``random`` and numpy."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random state as plain data (tensors, ints, lists) for a weights-only checkpoint."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None}
    if generator is not None:
        state["data"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what ``rng_state`` captured."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
    if generator is not None and state.get("data") is not None:
        generator.set_state(state["data"])


def fingerprint(model: nn.Module, digits: int = 12) -> str:
    """A short hash of the model's parameters (names, shapes and values, in order)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()[:digits]
