"""Files that are never left half-written, and JSON that is always valid.

- ``jsonable(obj)``: tensors, numpy values, tuples, dataclasses and non-finite floats -> plain
  JSON types (NaN/inf -> null), so results.json, metrics.jsonl and ``--json`` output parse
  everywhere (``json.dumps(..., allow_nan=False)`` never fails on them).
- ``atomic(path)``: a temporary file in the same folder, flushed, fsync-ed, then ``os.replace``-d
  over ``path``; a crash (even ``kill -9``) leaves the old file or the new one, never half of one.
- ``write_text`` / ``write_json``: ``atomic`` for text and JSON.
- ``why(e)``: an ``OSError`` in words ("no space left on device", "permission denied", ...);
  ``atomic`` stamps the file it was writing on every ``OSError`` (``e.filename``), so a caller
  can say which path could not be written.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def jsonable(obj):
    """A plain JSON value for ``obj`` (NaN and ±inf become None)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().tolist()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    elif hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif hasattr(obj, "tolist") and not isinstance(obj, (list, dict, str)):
        obj = obj.tolist()  # numpy arrays and scalars
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj, indent: int | None = None) -> str:
    """``json.dumps`` of ``jsonable(obj)``: one valid JSON document (no NaN, no Infinity)."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_WHY = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied", errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system", errno.ENOTDIR: "a part of the path is a file",
        errno.EISDIR: "it is a folder", errno.ENAMETOOLONG: "the name is too long"}


def why(e: OSError) -> str:
    """An OSError's reason in a few words (its errno's meaning, without the path)."""
    return _WHY.get(e.errno) or (e.strerror or str(e) or type(e).__name__).lower()


@contextmanager
def atomic(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """``with atomic(p) as f: f.write(...)``: ``p`` appears whole, or not at all."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        e.filename = str(path)
        raise
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            e.filename = str(path)  # the file the caller asked for, not the temporary one
        raise
    fsync_dir(path.parent)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj, indent: int | None = 1) -> Path:
    return write_text(path, dumps(obj, indent) + "\n")
