"""Progress and log lines on stderr, for training and studies alike.

On a terminal ``Progress`` is a live bar (rich): ``train ━━━━━  120/1000  loss 1.912 ...
elapsed 0:01:02  eta 0:07:35``. When stderr is not a terminal (a pipe, ``| tee log``, a batch
scheduler's log file) it prints a line when it starts, one plain line every ``every`` seconds
and a last one at the end, so a log is never empty while work goes on. ``log(msg)`` prints one
line.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.progress import Progress as _RichProgress

_console = Console(stderr=True, highlight=False)


def log(msg: str) -> None:
    """One status line on stderr (rich markup allowed, stripped when not a terminal), never
    wrapped: a log keeps one line per message."""
    _console.print(msg, soft_wrap=True)


def clock(seconds: float | None) -> str:
    """Seconds as H:MM:SS ("-:--:--" when unknown)."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``with Progress(total, "train") as p: ... p.update(done, "loss 1.23")``.

    ``start``: units already done before this process (a resumed run): the rate and the ETA
    count only what this process did. ``unit``: what is counted ("step", "run"). Units of unequal
size (study runs) pass ``update(done, fraction=work_done / work_total)`` for a fair ETA.
    """

    def __init__(self, total: int, description: str = "", *, start: int = 0,
                 enabled: bool = True, every: float = 10.0, unit: str = "step"):
        self.total, self.description, self.start = total, description, start
        self.enabled, self.every, self.unit = enabled, every, unit
        self.terminal = _console.is_terminal
        self.done = start
        self._fraction: float | None = None
        self._t0 = self._last_line = time.perf_counter()
        self._bar = None

    # -- figures --
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def rate(self) -> float | None:
        """Units per second in this process (None before the first)."""
        n, dt = self.done - self.start, self.elapsed()
        return n / dt if n > 0 and dt > 0 else None

    def eta(self) -> float | None:
        f = self._fraction
        if f is not None:  # the caller knows how much of the work is done (units of unequal size)
            return self.elapsed() * (1 - f) / f if f > 0 else None
        r = self.rate()
        return (self.total - self.done) / r if r else None

    def _times(self) -> str:
        r = self.rate()
        speed = "" if r is None else (f"{r:.2f} {self.unit}/s  " if r >= 1
                                      else f"{1 / r:.2f} s/{self.unit}  ")
        return f"{speed}elapsed {clock(self.elapsed())}  eta {clock(self.eta())}"

    # -- display --
    def __enter__(self):
        if self.enabled and self.terminal:
            self._bar = _RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TextColumn("[dim]{task.fields[times]}"), console=_console, transient=False)
            self._bar.__enter__()
            self._id = self._bar.add_task(self.description, total=self.total,
                                          completed=self.start, stats="", times="")
        elif self.enabled:  # a log is never empty while work goes on: say it started
            print(f"{self.description} {self.start}/{self.total}  started (a line every "
                  f"{self.every:g} s)", file=sys.stderr, flush=True)
        return self

    def update(self, done: int, stats: str = "", fraction: float | None = None) -> None:
        """``fraction``: the share of the work done, when units differ in size (the ETA then
        follows it rather than the count)."""
        self.done = done
        self._fraction = fraction
        self._stats = stats
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._id, completed=done, stats=stats, times=self._times())
        elif time.perf_counter() - self._last_line >= self.every:
            self._line(stats)

    def _line(self, stats: str) -> None:
        self._last_line = time.perf_counter()
        print(f"{self.description} {self.done}/{self.total}  {stats}  {self._times()}".replace(
            "   ", "  "), file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.enabled and self.done > self.start:
            self._line(getattr(self, "_stats", ""))
        return False
