"""A run's JSON-lines logs: written a line at a time, trimmed back on resume, read back for figures.

    metrics.jsonl     one line per step: {"step", "loss", "acc", "grad_norm", "lr", "time",
                      and at evaluation steps "val_loss", "val_acc", ...}
    telemetry.jsonl   one line per traced step (``trace_every``):
                      {"step": s, "layers": {name: {"grad_h": [[...]], "grad_c": [[...]] or null,
                                                    "gates": {gate: {"mean": [[...]],
                                                                     "saturated": [[...]]}}}}}
                      rows k = layer·num_directions + direction, columns the time steps

Each line is flushed as it is written, so a crash loses at most the line being written; a run
resumed from its checkpoint at step s first moves the lines after s aside
(``rundir.set_aside_metrics``), so the logs of a resumed run are those of a run that never
stopped. ``TelemetryLog`` writes telemetry.jsonl (``rundir.Metrics`` writes metrics.jsonl);
``read`` reads either back. Telemetry values keep 6 significant digits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import files

METRICS = "metrics.jsonl"
TELEMETRY = "telemetry.jsonl"
DIGITS = 6  # significant digits of telemetry values


class _Lines:
    """Appends JSON lines to ``path``, opened at the first line (no file when nothing is logged)."""

    def __init__(self, path: Path):
        self.path, self.f = Path(path), None

    def write(self, record: dict) -> None:
        if self.f is None:
            self.f = open(self.path, "a", buffering=1, encoding="utf-8")
        self.f.write(files.dumps(record) + "\n")

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    def on_end(self, trainer, history) -> None:
        self.close()


class TelemetryLog(_Lines):
    """Callback: telemetry.jsonl, a line per traced step (``on_trace``)."""

    def on_trace(self, trainer, record: dict) -> None:
        self.write(_round(files.jsonable(record)))


def _round(v):
    if isinstance(v, float):
        return float(f"{v:.{DIGITS}g}") if math.isfinite(v) else v
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def read(path: str | Path) -> list[dict]:
    """The records of a JSON-lines log ([] when there is no file); a last line cut short by a
    crash is left out."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out
