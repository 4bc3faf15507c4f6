"""The resume cache: each finished run of a study, one JSON file in the study's folder.

``OUT[/NAME]/runs/<arm>-seed<seed>-<key>.json`` holds the result of one ok run; ``key`` hashes
the spec (study, arm, seed, profile, settings), the rnnlab version and the digest of rnnlab's own
source files, so the same command with the same ``--out`` skips the runs already done, and a
changed setting or any edit to rnnlab's code runs again (torch's version is not in the key).
Failed runs are never cached. Files are written atomically by the driver as results arrive, so
an interrupted study keeps every run that finished. The cache keeps NaN and ±inf as they are
(``json`` writes them as NaN/Infinity), so a cached result summarises exactly as a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path

from .. import __version__
from ..files import write_text
from .executor import RunSpec


@cache
def source_digest() -> str:
    """sha256 of rnnlab's Python and kernel sources (names and bytes), read once per process."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".cpp", ".h")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def key(spec: RunSpec) -> str:
    """12 hex digits of sha256(spec without its cost estimate, rnnlab version and sources)."""
    ident = {"study": spec.study, "arm": spec.arm, "seed": spec.seed, "profile": spec.profile,
             "settings": spec.settings, "rnnlab": __version__, "source": source_digest()}
    text = json.dumps(ident, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def path(folder: Path, spec: RunSpec) -> Path:
    arm = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.arm)
    return Path(folder) / "runs" / f"{arm}-seed{spec.seed}-{key(spec)}.json"


def _plain(obj):
    """numpy scalars and arrays as Python values (anything else as its text)."""
    return obj.tolist() if hasattr(obj, "tolist") else repr(obj)


def load(folder: Path, spec: RunSpec) -> dict | None:
    """The cached ok result of ``spec``, or None (absent, unreadable or not ok)."""
    try:
        result = json.loads(path(folder, spec).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(result, dict) and result.get("status") == "ok"
          and (result.get("study"), result.get("arm"), result.get("seed"))
          == (spec.study, spec.arm, spec.seed))
    return result if ok else None


def save(folder: Path, spec: RunSpec, result: dict) -> None:
    """Cache an ok result (atomically); a failed one is left to run again."""
    if result.get("status") == "ok":
        write_text(path(folder, spec), json.dumps(result, default=_plain) + "\n")
