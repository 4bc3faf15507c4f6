"""rnnlab: see and measure how information and gradients move through time in sequence models.

The recurrent layers (``rnnlab.RNN``, ``LSTM``, ``GRU`` and their cells) are written from the
equations and run backpropagation through time explicitly, yet are drop-in compatible with
``torch.nn``. Submodules (``rnnlab.data``, ``rnnlab.models``, ``rnnlab.probes``, ...) are imported
on first use.
"""

import importlib

from .errors import UserError
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "UserError", "trace",
           "convert", "__version__"]

_SUBMODULES = {"equations", "cells", "engine", "stack", "masks", "layers", "interop", "telemetry",
               "attention", "backbone", "models", "seq2seq", "data", "losses", "train", "seeding",
               "console", "files", "runs", "checkpoint", "probes", "plots", "studies", "report",
               "cli"}


def __getattr__(name):
    if name == "trace":
        return importlib.import_module(".telemetry", __name__).trace
    if name == "convert":
        return importlib.import_module(".interop", __name__).convert
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rnnlab' has no attribute '{name}'")
