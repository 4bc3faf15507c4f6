"""The explorer: one self-contained HTML page to look inside a recurrent language model on a text.

    rnnlab.explore(model, tokenizer, text, "page.html")   # a model of your own
    explore_run("runs/shakespeare-lstm-…", out="page.html")  # a trained run (rnnlab explore)
    page_for_run(run_dir)    # a small page (about 1 MB) for a report to link, or None

The page shows the text one element per token, coloured by a chosen quantity: one unit's h_t
or c_t, a gate (one unit, or the mean over the units), the model's loss at the token
L_t = −log p(x_t | x_<t), or the saliency ‖∂L_s/∂x_t‖₂ of the loss at a selected token s back
to every earlier token t (click a token to select s). Selecting a span lists the units most
active over it (as LSTMVis does) and the other spans where they are active, per layer and
direction. A panel plots ‖∂L_s/∂h_t‖ (and ‖∂L_s/∂c_t‖) over the steps before s and the
fraction of saturated gate units per step. Keyboard and pointer both work; the page needs no
server and no network (data and script inline, works from file://).

What is stored, and how compactly (``rnnlab.stepwise`` computes the numbers):

- every unit's h_t, c_t and gates: one byte per value, quantised per unit between that unit's
  smallest and largest value over the text (error at most 1/510 of its range), gzip-ed and
  base64-ed, unpacked by the browser (DecompressionStream);
- means over units, losses, saliencies and gradient norms: float32 (the values autograd gave);
- the saliency and ‖∂L_s/∂h_t‖ for ``positions`` positions s (all tokens up to that many,
  else every k-th), each over the ``window`` steps before s (``stepwise.gradients``).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
import torch
from torch import nn

from . import files, stepwise
from .errors import UserError
from .telemetry import SIGMOID_GATES

WINDOW = 256        # steps before s whose saliency is computed
POSITIONS = 512     # positions s offered for the saliency, at most (every k-th beyond)
MAX_UNSEEN = 0.10   # a text with more of its tokens unseen is refused (as ``rnnlab evaluate``)


# ---- tokens ----------------------------------------------------------------------------------

def encode(tokenizer, text: str, max_unseen: float = MAX_UNSEEN) -> tuple[torch.Tensor, int]:
    """(ids, tokens skipped): the text's tokens the vocabulary knows; UserError when more than
    ``max_unseen`` of them are unknown (the text is not what the model was trained on)."""
    if not isinstance(text, str) or not text:
        raise UserError("the text to explore is empty")
    unseen = tokenizer.unseen(text) if hasattr(tokenizer, "unseen") else {}
    n_unseen = sum(unseen.values())
    total = tokenizer.count(text) if hasattr(tokenizer, "count") else len(text)
    if n_unseen > max_unseen * max(total, 1):
        shown = ", ".join(repr(c) for c, _ in unseen.most_common(8))
        raise UserError(f"{n_unseen} of the text's {total} tokens are not in the model's "
                        f"vocabulary (e.g. {shown}): it is not the kind of text the model was "
                        "trained on")
    try:
        ids = tokenizer.encode(text, unknown="skip")
    except TypeError:  # a tokenizer of the user's own, without rnnlab's policies
        ids = tokenizer.encode(text)
    return torch.as_tensor(ids, dtype=torch.long).reshape(-1), n_unseen


def display(tokenizer, ids) -> tuple[list[str], list[str] | None]:
    """(token texts, the text before each token or None): how the page writes the tokens."""
    ids = [int(i) for i in ids]
    if getattr(tokenizer, "type", None) == "word":
        from .data.words import separator

        toks = [tokenizer.words[i] for i in ids]
        return toks, [separator(p, t) for p, t in zip([None, *toks[:-1]], toks, strict=True)]
    if getattr(tokenizer, "type", None) == "char":
        return [tokenizer.chars[i] for i in ids], None
    return [tokenizer.decode([i]) for i in ids], None


# ---- packing numbers for the page ------------------------------------------------------------

def _b64(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _f32(a) -> str:
    return _b64(np.asarray(a, dtype=np.float64), "<f4")


def quantise(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """v (T, N) -> (q uint8 (T, N), lo (N,), hi (N,)): v ≈ lo + (hi − lo)·q/255 per unit."""
    v = np.asarray(v, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((v - lo) / span * 255).clip(0, 255).astype(np.uint8)
    return q, lo.astype(np.float32), (lo + span).astype(np.float32)


def dequantise(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The values the page computes from ``quantise``'s output (float32 bounds, as stored)."""
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    return lo + (hi - lo) * q.astype(np.float64) / 255


def _kind(name: str, layer: stepwise.LayerStates) -> str:
    """The colour scale of a quantity: "unit" (σ, 0..1), "signed" (tanh-like, −1..1) or
    "free" (c_t, the LRU's state, a relu RNN's h: symmetric around 0 by its largest |v|)."""
    if name in SIGMOID_GATES:
        return "unit"
    if name == "c" or layer.mode == "LRU" or (name == "h" and layer.nonlinearity == "relu"):
        return "free"
    return "signed"


def _layer_data(layer: stepwise.LayerStates, blobs: list) -> dict:
    quantities = {"h": layer.h, **({"c": layer.c} if layer.c is not None else {}), **layer.gates}
    out = {}
    for name, v in quantities.items():
        q, lo, hi = quantise(v)
        out[name] = {"blob": len(blobs), "lo": _f32(lo), "hi": _f32(hi), "kind": _kind(name, layer),
                     "mean": _f32(np.asarray(v, np.float64).mean(1))}
        blobs.append(q)
    sat = {g: _b64(n, "<u2") for g, n in layer.saturation().items()}
    return {"label": layer.label, "module": layer.module, "mode": layer.mode,
            "layer": layer.layer, "direction": layer.direction, "units": int(layer.h.shape[1]),
            "quantities": out, "sat": sat}


def page_data(rec: stepwise.Record, grads: stepwise.Gradients | None, tokens: list[str],
              seps: list[str] | None, tokenizer, meta: dict) -> dict:
    """Everything the page shows, as JSON-able data (the big arrays packed; module doc)."""
    blobs: list[np.ndarray] = []
    layers = [_layer_data(layer, blobs) for layer in rec.layers]
    if grads is not None:
        for k, entry in enumerate(layers):
            entry["grad_h"] = _f32(grads.grad_h[k])
            if grads.grad_c[k] is not None:
                entry["grad_c"] = _f32(grads.grad_c[k])
    packed = gzip.compress(b"".join(b.tobytes() for b in blobs), compresslevel=6, mtime=0)
    offsets = np.cumsum([0] + [b.size for b in blobs]).tolist()
    pred = rec.predicted
    vocab = sorted({int(i) for i in pred if i >= 0})
    where = {v: j for j, v in enumerate(vocab)}
    pred_tokens, _ = display(tokenizer, vocab) if vocab else ([], None)
    data = {
        "meta": meta, "tokens": tokens, "seps": seps,
        "loss": _f32(rec.loss), "pred": _b64([where.get(int(i), 65535) for i in pred], "<u2"),
        "pred_p": _f32(rec.predicted_p), "pred_vocab": pred_tokens,
        "layers": layers, "states": base64.b64encode(packed).decode("ascii"),
        "offsets": offsets,
        "saliency": None if grads is None else {
            "positions": grads.positions, "window": grads.window, "mode": grads.mode,
            "values": _f32(grads.saliency), "note": grads.note},
    }
    return data


def render(data: dict, title: str) -> str:
    """The page: the template with the data inline (every "<" escaped inside the JSON)."""
    template = resources.files("rnnlab").joinpath("templates/explorer.html").read_text("utf-8")
    payload = json.dumps(files.jsonable(data), ensure_ascii=False, separators=(",", ":"),
                         allow_nan=False)  # (a non-finite number would be null)
    payload = payload.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace(
        "\u2029", "\\u2029")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(title=title, data=jinja2.utils.markupsafe.Markup(
        payload))


# ---- the page --------------------------------------------------------------------------------

def _check_sizes(window, positions) -> tuple[int, int | None]:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise UserError(f"window must be a positive number of tokens, got {window!r}")
    if positions == "all" or positions is None:
        return window, None
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 0:
        raise UserError(f"positions must be a number ≥ 0 or 'all', got {positions!r}")
    return window, positions


def build(model: nn.Module, tokenizer, text: str | None = None, *, ids=None,
          window: int = WINDOW, positions: int | str | None = POSITIONS,
          title: str | None = None, note: str = "", max_unseen: float = MAX_UNSEEN,
          progress=None) -> tuple[str, dict]:
    """(HTML, facts): the explorer page of ``model`` on ``text`` (or on token ``ids``; module
    doc), and what it holds (tokens, units, saliency positions and window, seconds taken).
    ``progress(done, total)``: called as the gradients of the positions are computed."""
    window, most = _check_sizes(window, positions)
    t0 = time.perf_counter()
    if ids is None:
        ids, skipped = encode(tokenizer, text, max_unseen)
    else:
        ids, skipped = torch.as_tensor(ids, dtype=torch.long).reshape(-1), 0
    rec = stepwise.record(model, ids)
    pos = stepwise.default_positions(ids.numel(), most)
    grads = stepwise.gradients(model, ids, pos, window, rec, progress) if pos else None
    tokens, seps = display(tokenizer, ids)
    units = max(layer.h.shape[1] for layer in rec.layers)
    meta = {"title": title or "rnnlab explorer", "tokens": len(tokens), "units": units,
            "tokenizer": getattr(tokenizer, "type", type(tokenizer).__name__),
            "model": _describe(model), "skipped": skipped, "note": note,
            "mean_loss": float(np.nanmean(rec.loss)),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    data = page_data(rec, grads, tokens, seps, tokenizer, meta)
    html = render(data, meta["title"])
    facts = {"tokens": len(tokens), "units": units, "layers": len(rec.layers),
             "skipped": skipped, "positions": len(pos),
             "window": grads.window if grads else 0, "saliency_mode": grads.mode if grads else None,
             "seconds": time.perf_counter() - t0, "bytes": len(html.encode("utf-8"))}
    return html, facts


def _describe(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict) and "backbone" in cfg:
        return (f"{cfg['backbone']} LM, {cfg.get('num_layers')} layer(s) × "
                f"{cfg.get('hidden_size')} units, vocabulary {cfg.get('vocab_size')}")
    from .interop import recurrent_layers

    layers = recurrent_layers(model)
    return ", ".join(f"{name or 'model'}: {type(m).__name__}({m.input_size}, {m.hidden_size}, "
                     f"num_layers={m.num_layers})" for name, m in layers.items())


def explore(model: nn.Module, tokenizer, text: str, out: str | os.PathLike = "explorer.html",
            *, window: int = WINDOW, positions: int | str | None = POSITIONS,
            title: str | None = None) -> Path:
    """Write the explorer page of ``model`` (token ids (1, T) -> logits (1, T, V), with an rnnlab
    or torch.nn recurrent layer) on ``text``, tokenised by ``tokenizer`` (rnnlab's
    CharTokenizer / WordTokenizer, or any object with ``encode(text)`` and ``decode(ids)``),
    to ``out``; return its path."""
    html, _ = build(model, tokenizer, text, window=window, positions=positions, title=title)
    return files.write_text(Path(out), html)


# ---- a trained run ---------------------------------------------------------------------------

LENGTH = 2000       # tokens explored by default
SMALL = {"length": 600, "window": 128, "positions": 150}  # page_for_run: a page of ~1 MB


def _text_run(run) -> None:
    if run.tokenizer is None or run.config.get("model", {}).get("name") != "lm":
        task = run.config.get("task", {}).get("name")
        raise UserError(f"{run.path}: explore needs a text run (a language model with a "
                        f"vocabulary), this is a '{task}' run")
    if run.config["model"].get("backbone") == "attention":
        raise UserError(f"{run.path}: an attention model has no recurrent state to explore "
                        "step by step (explore a rnn, lstm, gru, mingru, minlstm or lru run)")


def run_ids(run, *, text: str | None = None, prime: str | None = None, length: int = LENGTH,
            temperature: float = 0.8, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(token ids, where they come from) for a text run: the first ``length`` tokens of
    ``text``; or ``prime`` followed by the model's own continuation, ``length`` tokens in all
    (sampled at ``temperature`` with ``seed``); or, with neither, the first ``length`` tokens
    of the run's validation text (held out from training)."""
    _text_run(run)
    tok = run.tokenizer
    if text is not None and prime is not None:
        raise UserError("give a text or a prime, not both")
    if text is not None:
        ids, skipped = encode(tok, text)
        note = f"the first {min(length, ids.numel())} tokens of the given text" + (
            f" ({skipped} unseen skipped)" if skipped else "")
        return ids[:length], note
    if prime is not None:
        if not prime:
            raise UserError("the prime is empty: give at least one token")
        ids = tok.encode(prime)  # unseen tokens in a prime are an error, as for sampling
        more = max(0, length - ids.numel())
        gen = torch.Generator().manual_seed(seed)
        cont = run.model.generate(ids, more, temperature=temperature, generator=gen)[0].cpu()
        return torch.cat([ids, cont]), (f"the prime, then {more} tokens the model wrote "
                                        f"(temperature {temperature}, seed {seed})")
    if run.task is None or not hasattr(run.task, "ids"):
        raise UserError(f"cannot rebuild the run's text ({run.task_error}): give a text file")
    return run.task.ids["val"][:length], (f"the first {length} tokens of the run's "
                                          "validation text (held out from training)")


def explore_run(run, *, text: str | None = None, prime: str | None = None,
                length: int = LENGTH, out: str | os.PathLike | None = None,
                window: int = WINDOW, positions: int | str | None = POSITIONS,
                temperature: float = 0.8, seed: int = 0, device: str = "cpu", progress=None
                ) -> tuple[Path, dict]:
    """``rnnlab explore``: the page of a trained text run (a ``Run``, or its directory or
    checkpoint) on the tokens ``run_ids`` picks, written to ``out`` (default: ``explorer.html``
    in the run directory). Returns (path, facts)."""
    from .runload import Run, load_run

    run = run if isinstance(run, Run) else load_run(run, device=device)
    ids, note = run_ids(run, text=text, prime=prime, length=length, temperature=temperature,
                        seed=seed)
    if out is None:
        if run.dir is None:
            raise UserError(f"{run.path} is not inside a run directory: say where the page goes "
                            "(--out)")
        out = run.dir / "explorer.html"
    name = run.dir.name if run.dir is not None else run.path.name
    html, facts = build(run.model, run.tokenizer, ids=ids, window=window, positions=positions,
                        title=f"rnnlab explorer: {name} (step {run.step})", note=note,
                        progress=progress)
    return files.write_text(Path(out), html), facts


def page_for_run(run, out: str | os.PathLike | None = None, **sizes) -> Path | None:
    """A small explorer page (``SMALL`` sizes: ``length``, ``window``, ``positions``, each
    overridable) of a text run (a ``Run``, or its directory or checkpoint) on its validation
    text, written to ``out`` (default: ``explorer.html`` in the run directory), for a report to
    link; None when the run is not a recurrent text model."""
    from .runload import Run, load_run

    run = run if isinstance(run, Run) else load_run(run)
    try:
        _text_run(run)
    except UserError:
        return None
    return explore_run(run, out=out, **{**SMALL, **sizes})[0]
