"""rnnlab: see and measure how information and gradients move through time in sequence models.

The recurrent layers (``rnnlab.RNN``, ``LSTM``, ``GRU`` and their cells) are written from the
equations and run backpropagation through time explicitly, yet are drop-in compatible with
``torch.nn``. ``rnnlab.MinGRU``, ``MinLSTM`` and ``LRU`` are the linear recurrences that train
by a parallel scan (``rnnlab.scan``), with the same module conventions. Submodules
(``rnnlab.data``, ``rnnlab.models``, ``rnnlab.probes``, ...) are imported on first use.
"""

import importlib

from .cell_modules import GRUCell, LSTMCell, RNNCell
from .errors import UserError
from .layers import GRU, LSTM, RNN
from .lru import LRU
from .minrnn import MinGRU, MinLSTM

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "MinGRU", "MinLSTM", "LRU",
           "UserError", "trace", "convert", "explore", "__version__"]


def __getattr__(name):
    """``rnnlab.trace``, ``rnnlab.convert``, ``rnnlab.explore``, and every submodule
    (``rnnlab.models``, ...) on first use."""
    if name == "trace":
        return importlib.import_module(".telemetry", __name__).trace
    if name == "convert":
        return importlib.import_module(".interop", __name__).convert
    if name == "explore":
        return importlib.import_module(".explorer", __name__).explore
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":  # a submodule that exists but fails to import
            raise
    raise AttributeError(f"module 'rnnlab' has no attribute '{name}'")
