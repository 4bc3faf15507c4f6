"""Checkpoints: data on disk that never runs code.

A checkpoint is one ``.pt`` file holding a plain dictionary (tensors, numbers, strings, lists,
dicts) — model weights, optimiser state, step, every random-generator state, the vocabulary and
the run's configuration::

    {"format": "rnnlab.checkpoint", "version": 1, "step": int, "config": {...},
     "model": state_dict, "optimizer": state_dict, "rng": {...}, "tokenizer": {...} | None, ...}

- ``save`` is atomic: it writes a temporary file in the same directory, flushes and fsyncs it,
  then ``os.replace``-s it over the target, so a crash (even ``kill -9``) leaves either the old
  file or the new one, never half of one. The payload is serialised in memory first and then
  written, so a full disk or a refused write is an ``OSError`` naming the checkpoint (torch's
  own writer reports it as an unrelated RuntimeError) and the old file stays as it was.
- ``load`` uses ``torch.load(weights_only=True)``: only tensors and plain containers can come
  back, so a file holding a pickle that would run code is refused, not executed. Corrupt,
  truncated and foreign files (a ``.pt`` that is not an rnnlab checkpoint) are ``UserError``s.
- Tensors are loaded onto the CPU (``map_location``) so a run trained on a GPU samples anywhere.
- ``find`` picks a run directory's checkpoint (``rnnlab.runs.load_run`` rebuilds the run).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from . import files
from .errors import UserError

FORMAT = "rnnlab.checkpoint"
VERSION = 1
LAST = "last.pt"   # the newest checkpoint of a run
BEST = "best.pt"   # the checkpoint with the best validation loss so far


def save(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same dir, fsync, os.replace)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    with files.atomic(path) as f:
        f.write(buf.getbuffer())
    return Path(path)


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by ``save``; ``UserError`` if missing, corrupt or foreign."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UserError(f"not a checkpoint file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4" on foreign files
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # the weights-only unpickler met something other than tensors and plain data:
        # a reference to a class or function (code it would call) or bytes that are no pickle
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise UserError(f"refusing to load {path}: it is not an rnnlab checkpoint and holds "
                            f"a pickle that would run code ({found.group(1)}); "
                            "it was not executed") from None
        raise UserError(f"cannot read checkpoint {path}: not an rnnlab checkpoint (corrupt, or "
                        "not plain data; the safe loader refused it, nothing was executed)"
                        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            UnicodeDecodeError, KeyError, AttributeError, IndexError, TypeError) as e:
        raise UserError(f"cannot read checkpoint {path}: the file is corrupt or truncated "
                        f"({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an rnnlab checkpoint")
    if payload.get("version") != VERSION:
        raise UserError(f"{path}: unsupported rnnlab checkpoint version "
                        f"{payload.get('version')!r} (this rnnlab reads version {VERSION})")
    for key in ("step", "config", "model"):
        if key not in payload:
            raise UserError(f"{path} is an incomplete rnnlab checkpoint (no '{key}')")
    return payload


def find(path: str | os.PathLike) -> Path:
    """The checkpoint file for a run directory (its last.pt, else its newest .pt) or a .pt file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such run directory or checkpoint: {path}")
    if path.is_file():
        return path
    if (path / LAST).is_file():
        return path / LAST
    found = sorted(path.glob("*.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no checkpoint (*.pt) in {path}")
    return found[-1]
