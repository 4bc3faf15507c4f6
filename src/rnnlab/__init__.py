"""rnnlab: see and measure how information and gradients move through time in sequence models.

The recurrent layers (``rnnlab.RNN``, ``LSTM``, ``GRU`` and their cells) are written from the
equations and run backpropagation through time explicitly, yet are drop-in compatible with
``torch.nn``. ``rnnlab.MinGRU``, ``MinLSTM`` and ``LRU`` are the linear recurrences that train
by a parallel scan (``rnnlab.scan``), with the same module conventions. Submodules
(``rnnlab.data``, ``rnnlab.models``, ``rnnlab.probes``, ...) are imported on first use.
"""

import importlib

from .errors import UserError
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .lru import LRU
from .minrnn import MinGRU, MinLSTM

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "MinGRU", "MinLSTM", "LRU",
           "UserError", "trace", "__version__"]

_SUBMODULES = {"equations", "cells", "engine", "masks", "layers", "scan", "scanrnn", "minrnn",
               "lru", "telemetry", "attention", "backbone", "models", "seq2seq", "data",
               "losses", "train", "seeding", "console", "files", "runs", "rundir", "runload",
               "sizing", "configfile", "export", "checkpoint", "probes", "plots", "studies",
               "report", "cli"}


def __getattr__(name):
    if name == "trace":
        return importlib.import_module(".telemetry", __name__).trace
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rnnlab' has no attribute '{name}'")
