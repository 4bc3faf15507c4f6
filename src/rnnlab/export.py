"""Take a trained model elsewhere: TorchScript, or ONNX where the model allows.

    export(model, "lm.pt", "torchscript")     # torch.jit.load("lm.pt")(ids) -> logits
    export(model, "lm.onnx", "onnx")          # needs the onnx extra: pip install "rnnlab[onnx]"

What is exported is the model's forward from its input to its output (logits (B, T, V) for a
language model from ids (B, T); logits (B, C) for a classifier; (B,) for a regressor), batch
and length free. rnnlab's recurrent layers run their recurrence in Python (the explicit BPTT
engine) or through torch's fused kernels on the same Parameters; the export swaps each for the
``torch.nn.RNN/LSTM/GRU`` that holds the very same weights (the names and shapes are torch's,
so ``load_state_dict`` is exact) and traces that. Seq2seq models decode in a data-dependent loop
and are not exported.

Every export is checked: the exported file is loaded back (TorchScript: ``torch.jit.load``;
ONNX: ``onnxruntime``) and run on an input of another batch size and length than the one
traced; its logits must equal the rnnlab model's own (explicit engine) to within 1e-4, or the
export is refused. The result says by how much they differ.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from . import files
from .errors import UserError
from .interop import convert
from .layers import RNNBase
from .models import Classifier, LanguageModel, Regressor

FORMATS = ("torchscript", "onnx")
TOLERANCE = 1e-4


def torch_layers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) whose rnnlab recurrent layers are ``torch.nn`` ones
    holding the same weights (``rnnlab.convert``)."""
    return convert(copy.deepcopy(model).eval(), to="torch")


class Logits(nn.Module):
    """The model's output alone (a language model also returns its recurrent state)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


def example(model: nn.Module, batch: int = 2, length: int = 16,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """An input the model takes: token ids (B, T) or float features (B, T, F)."""
    w = next(model.parameters())
    vocab = model.config.get("vocab_size")
    if isinstance(model, (LanguageModel, Classifier)) and vocab:
        return torch.randint(0, vocab, (batch, length), generator=generator).to(w.device)
    if isinstance(model, (Classifier, Regressor)):
        return torch.randn(batch, length, model.config["input_size"], generator=generator,
                           dtype=w.dtype).to(w.device)
    raise UserError(f"cannot export a {model.config.get('name', type(model).__name__)!r} "
                    "model: export takes language models, classifiers and regressors "
                    "(a seq2seq model decodes in a loop)")


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rnnlab model's own logits, its recurrence on the explicit BPTT engine."""
    ref = copy.deepcopy(model).eval()
    for m in ref.modules():
        if isinstance(m, RNNBase):
            m.backend = "engine"
    with torch.no_grad():
        return Logits(ref)(x)


def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError("--format onnx needs the onnx and onnxruntime packages: "
                        'pip install "rnnlab[onnx]"') from None
    return onnx, onnxruntime


def export(model: nn.Module, path: str | os.PathLike, fmt: str = "torchscript",
           meta: dict | None = None) -> dict:
    """Write ``model`` to ``path`` as ``fmt`` and check it (module doc); returns
    {"path", "format", "max_abs_diff", "checked_on"}. ``meta`` (JSON-able: the run's config
    and vocabulary) travels inside the file: TorchScript's extra file "rnnlab.json"
    (``torch.jit.load(p, _extra_files={"rnnlab.json": ""})``), ONNX's metadata "rnnlab"."""
    extra = {"rnnlab.json": files.dumps(meta or {})}
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    path = Path(path)
    gen = torch.Generator().manual_seed(0)
    traced_on, check_on = example(model, 2, 16, gen), example(model, 3, 7, gen)
    wrapped = Logits(torch_layers(model))
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # checked below instead
            ts = torch.jit.trace(wrapped, traced_on, check_trace=False)
        with files.atomic(path) as f:
            torch.jit.save(ts, f, _extra_files=extra)
        with torch.no_grad():
            got = torch.jit.load(str(path), map_location=traced_on.device)(check_on)
    else:
        onnx, ort = _onnx_modules()
        dims = {0: "batch", 1: "time"}
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and exporter notes; checked below instead
            torch.onnx.export(wrapped, (traced_on,), buf, input_names=["x"],
                              output_names=["logits"], dynamo=False,
                              dynamic_axes={"x": dims, "logits": dims if
                                            isinstance(model, LanguageModel) else {0: "batch"}})
        proto = onnx.load_from_string(buf.getvalue())
        onnx.helper.set_model_props(proto, {"rnnlab": extra["rnnlab.json"]})
        with files.atomic(path) as f:
            f.write(proto.SerializeToString())
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {"x": check_on.cpu().numpy()})[0])
    want = _reference(model, check_on).cpu()
    diff = float((got.cpu().to(want.dtype) - want).abs().max()) if got.shape == want.shape \
        else float("inf")
    if not diff <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise UserError(f"the exported {fmt} model does not reproduce the run's logits "
                        f"(max |difference| {diff:.3g} > {TOLERANCE:g}); nothing was written")
    return {"path": path, "format": fmt, "max_abs_diff": diff,
            "checked_on": tuple(check_on.shape)}
