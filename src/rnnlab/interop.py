"""torch.nn's recurrent layers and rnnlab's: find them in any model, run torch.nn's on rnnlab's
engine for a while, and convert one kind into the other in place.

    rnnlab.convert(model)              # every torch.nn.RNN/LSTM/GRU -> rnnlab's, same Parameters
    rnnlab.convert(model, to="torch")  # and back

- ``recurrent_layers(model)``: {qualified name: module} of every recurrent layer in ``model``,
  rnnlab's (``rnnlab.RNN/LSTM/GRU``) and torch.nn's (``torch.nn.RNN/LSTM/GRU``);
- ``attach(module, taps)`` / ``detach(module)``: until detached, the module runs on rnnlab's engine
  (``rnnlab.stack.run_layer``) with its own Parameters and these telemetry taps. An rnnlab layer
  gets them as its ``_taps``; a torch.nn layer gets, on the instance, a ``forward`` that calls
  the engine (its class, its Parameters and everything else stay as they are; ``detach`` deletes
  that attribute). ``rnnlab.trace`` is built on these two;
- ``convert(model, to)``: replaces the layers in place (every reference to them in the module
  tree) by the other kind's, built around the very same Parameter objects: ``state_dict`` keys and
  values are unchanged, an optimizer holding the parameters keeps working, and the gradients land
  where they did. Hooks registered on the old module move with it.

What rnnlab's engine cannot run is refused by ``unsupported``, the one place that says so (a
subclass that overrides ``forward``, a forward replaced on the instance).
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn.utils import parametrize

from .layers import GRU, LSTM, RNN, RNNBase
from .scanrnn import ScanRNNBase
from .stack import run_layer, step_of

TORCH_LAYERS = (nn.RNN, nn.LSTM, nn.GRU)
_TORCH_FORWARDS = tuple(c.forward for c in TORCH_LAYERS)
_MARK = "__rnnlab_taps__"  # set on the forward that ``attach`` puts on a torch.nn layer


_RNNLAB_LAYERS = (RNNBase, ScanRNNBase)  # rnnlab's: RNN/LSTM/GRU, MinGRU/MinLSTM/LRU


def is_recurrent(m: nn.Module) -> bool:
    """An rnnlab.RNN/LSTM/GRU/MinGRU/MinLSTM/LRU or a torch.nn.RNN/LSTM/GRU (or a subclass)."""
    return isinstance(m, (*_RNNLAB_LAYERS, *TORCH_LAYERS))


def unsupported(m: nn.Module) -> str | None:
    """Why rnnlab's engine cannot run the recurrent layer ``m`` (None when it can)."""
    name = type(m).__name__
    if isinstance(m, TORCH_LAYERS) and not isinstance(m, RNNBase):
        if type(m).forward not in _TORCH_FORWARDS:
            return f"{name} overrides forward(), which rnnlab cannot run in its place"
        if "forward" in vars(m) and not attached(m):
            return f"this {name}'s forward is replaced on the instance"
    return None


def recurrent_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{qualified name ("" for ``model`` itself): layer} of every recurrent layer, rnnlab's or
    torch.nn's, in ``model``; ValueError naming any that rnnlab's engine cannot run."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    found = {name: m for name, m in model.named_modules() if is_recurrent(m)}
    refused = [f"'{name}': {why}" if name else why for name, m in found.items()
               if (why := unsupported(m))]
    if refused:
        raise ValueError("; ".join(refused))
    return found


# ---- running a torch.nn layer on the engine ------------------------------------------------------

def attached(m: nn.Module) -> bool:
    """Whether ``m`` runs on the engine with telemetry taps (``attach``)."""
    if isinstance(m, _RNNLAB_LAYERS):
        return m._taps is not None
    return hasattr(vars(m).get("forward"), _MARK)


def attach(m: nn.Module, taps: list) -> None:
    """Run ``m`` on rnnlab's engine with ``taps`` (one per layer·direction) until ``detach``."""
    if isinstance(m, _RNNLAB_LAYERS):
        m._taps = taps
        return
    step = step_of(m)

    def forward(input, hx=None):  # torch.nn.RNN/LSTM/GRU.forward's signature
        return run_layer(m, input, hx, step=step, taps=taps)

    setattr(forward, _MARK, True)
    vars(m)["forward"] = forward  # an instance attribute, before the class's forward


def detach(m: nn.Module) -> None:
    """Back to normal: the module's own forward (torch.nn), or no taps (rnnlab)."""
    if isinstance(m, _RNNLAB_LAYERS):
        m._taps = None
    elif attached(m):
        del vars(m)["forward"]


# ---- conversion ----------------------------------------------------------------------------------

_KINDS = ("rnnlab", "torch")


def _rebuild(m: nn.Module, to: str) -> nn.Module:
    """A layer of the other kind with ``m``'s configuration, holding ``m``'s Parameters."""
    mode = "RNN" if m.mode.startswith("RNN") else m.mode
    kw = {"num_layers": m.num_layers, "bias": m.bias, "batch_first": m.batch_first,
          "dropout": m.dropout, "bidirectional": m.bidirectional, "device": "meta",
          "dtype": m.weight_ih_l0.dtype}
    if mode == "RNN":
        kw["nonlinearity"] = m.nonlinearity
    if getattr(m, "proj_size", 0):
        kw["proj_size"] = m.proj_size
    cls = {"rnnlab": {"RNN": RNN, "LSTM": LSTM, "GRU": GRU},
           "torch": {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}}[to][mode]
    with warnings.catch_warnings():  # "dropout expects num_layers > 1": said when m was built
        warnings.simplefilter("ignore", UserWarning)
        new = cls(m.input_size, m.hidden_size, **kw)  # on "meta": no memory, no init cost
    for name, p in m.named_parameters(recurse=False):
        setattr(new, name, p)  # the very Parameter (torch.nn's __setattr__ tracks _flat_weights)
    if to == "torch":
        new._init_flat_weights()  # what torch.nn does after .to(): cuDNN's layout, in place
    for key, value in vars(m).items():  # forward / backward / state_dict hooks move along
        if "hook" in key:
            vars(new)[key] = value
    return new.train(m.training)


def convert(model: nn.Module, to: str = "rnnlab") -> nn.Module:
    """Replace, in place, every torch.nn.RNN/LSTM/GRU in ``model`` by the rnnlab layer with the
    same configuration and the *same* Parameter objects (``to="torch"``: every rnnlab layer by
    torch.nn's). Returns ``model``, or the new layer when ``model`` is itself one."""
    if to not in _KINDS:
        raise ValueError(f"to must be one of {', '.join(map(repr, _KINDS))}, got {to!r}")
    layers = recurrent_layers(model)
    src = (lambda m: not isinstance(m, _RNNLAB_LAYERS)) if to == "rnnlab" else \
        (lambda m: isinstance(m, RNNBase))  # the scan layers have no torch.nn counterpart
    todo = {id(m): m for m in layers.values() if src(m)}
    for name, m in layers.items():
        if id(m) in todo and attached(m):
            raise RuntimeError(f"cannot convert {name or type(m).__name__} while it is traced")
        if id(m) in todo and parametrize.is_parametrized(m):
            raise ValueError(f"cannot convert {name or type(m).__name__}: it has "
                             "parametrizations (torch.nn.utils.parametrize)")
    new = {key: _rebuild(m, to) for key, m in todo.items()}
    for parent in model.modules():  # every reference, also to a layer shared by two parents
        for child_name, child in list(parent._modules.items()):
            if child is not None and id(child) in new:
                parent._modules[child_name] = new[id(child)]
    return new.get(id(model), model)
