"""A run directory on disk: one writer at a time, and files that survive crashes and resumes.

- ``make_dir(path)``: create the run directory; a file in the way, a folder that cannot be
  written or a full disk is a ``UserError`` naming the path.
- ``RunLock(path)``: the one-writer rule. ``.lock`` in the run directory holds the writer's pid,
  host and start time, and an exclusive ``flock`` on it while the writer lives (the kernel drops
  it when the process dies, however it dies). A second writer is refused with the holder's pid
  and host; a lock file left by a process that died (``kill -9``, a power cut) is reported and
  taken over. Where ``fcntl`` is missing (Windows) the file alone is the lock and a holder whose
  pid is gone on this host is taken over.
- ``check_fresh(path)``: a new run never writes into files of an earlier one: a folder holding
  ``last.pt`` is a run to ``--resume``; one holding only other run files (``metrics.jsonl``,
  ``config.json``, ... from a run stopped before its first checkpoint) is refused too, so
  nothing is appended to an old file or overwritten.
- ``set_aside_metrics(path, step)``: on resume, metrics.jsonl lines after the checkpoint's step
  (written after the checkpoint, so about to be redone) and torn lines (a crash mid-write) are
  moved to ``metrics.set-aside-<step>.jsonl``, never deleted; every good line stays.
- The callbacks ``train_run`` writes with: ``Checkpoints`` (last.pt, best.pt), ``Metrics``
  (metrics.jsonl, one flushed line per step) and ``TensorBoard``. A write that fails (a full
  disk, a permission) raises ``OSError`` carrying the file's path in ``filename``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from datetime import datetime
from pathlib import Path

import torch

from . import checkpoint, console, files
from .errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = ".lock"
METRICS = "metrics.jsonl"
RUN_FILES = ("config.json", METRICS, checkpoint.LAST, checkpoint.BEST, "results.json")


# ---- the folder ----------------------------------------------------------------------------

def make_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the run directory (and its parents); every way that fails -> UserError."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "exists and is not a folder" if blocker == path else \
            f"cannot be created: {blocker} is a file, not a folder"
        raise UserError(f"{option} {path} {where}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create {e.filename or path}: "
                        f"{files.why(e)}") from None
    return path


def check_fresh(path: Path) -> None:
    """A new run may not write into an earlier run's files (see the module doc)."""
    if (path / checkpoint.LAST).exists():
        raise UserError(f"{path} already holds a run; resume it with --resume {path} "
                        "or choose another --out")
    old = [name for name in RUN_FILES if (path / name).exists()]
    if old:
        raise UserError(f"{path} holds {', '.join(old)} of an earlier run that stopped before "
                        "its first checkpoint (nothing to resume); choose another --out, or "
                        "delete them to reuse the folder")


# ---- the lock ------------------------------------------------------------------------------

def _holder_text(info: dict) -> str:
    pid, host = info.get("pid", "?"), info.get("host", "?")
    since = f", since {info['since']}" if info.get("since") else ""
    return f"pid {pid} on {host}{since}"


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_info(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0) if hasattr(os, "pread") else b""
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """``with RunLock(run_dir):``: this process is the run directory's one writer."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.path = self.dir / LOCK
        self.fd: int | None = None
        self.taken_over: dict | None = None  # the stale holder's info, when there was one

    def __enter__(self) -> RunLock:
        try:
            self._acquire()
        except OSError as e:
            raise UserError(f"cannot lock the run directory: cannot write {self.path}: "
                            f"{files.why(e)}") from None
        return self

    def _busy(self, info: dict) -> UserError:
        return UserError(f"{self.dir} is in use by another rnnlab process "
                         f"({_holder_text(info)}): only one may write a run at a time; wait "
                         "for it to finish (or stop it), or choose another folder")

    def _acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now().isoformat(timespec="seconds")}
        while True:
            if fcntl is None:
                fd = self._acquire_without_flock(me)
                break
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = _read_info(fd)
                os.close(fd)
                raise self._busy(info) from None
            try:  # the holder may have removed the file between our open and our flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_info(fd)
        try:
            data = json.dumps(me).encode()
            os.ftruncate(fd, 0)
            os.write(fd, data)
            os.fsync(fd)
        except OSError:
            self.fd = fd
            self._release()
            raise
        self.fd = fd
        if previous:  # the file was there, but nobody held it: its writer died
            self.taken_over = previous
            state = "no longer running" if not _alive(previous.get("pid")) or \
                previous.get("host") != me["host"] else "not holding it"
            console.log(f"note: {self.dir} had a stale lock from {_holder_text(previous)} "
                        f"({state}); taking it over")

    def _acquire_without_flock(self, me: dict) -> int:
        for _ in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    info = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    info = {}
                if info.get("host") == me["host"] and not _alive(info.get("pid")):
                    self.path.unlink(missing_ok=True)  # stale: taken over below
                    continue
                raise self._busy(info) from None
        raise self._busy({})

    def _release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: no one sees it half
        except OSError:
            pass
        os.close(self.fd)  # drops the flock
        self.fd = None

    def __exit__(self, *exc) -> bool:
        self._release()
        return False


# ---- metrics.jsonl -------------------------------------------------------------------------

def set_aside_metrics(path: Path, step: int) -> str | None:
    """Move lines after ``step`` and torn lines of a JSON-lines log (metrics.jsonl,
    telemetry.jsonl) aside to ``<name>.set-aside-<step>.jsonl``; a note, or None."""
    if not path.exists():
        return None
    raw = path.read_bytes()
    keep, later, torn = [], [], []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            s = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            torn.append(line)
            continue
        (keep if s <= step else later).append(line)
    if not later and not torn:
        if raw and not raw.endswith(b"\n"):  # a whole last line without its newline
            files.write_text(path, b"".join(x + b"\n" for x in keep).decode("utf-8"))
        return None
    stem = path.name.removesuffix(".jsonl")
    aside = path.with_name(f"{stem}.set-aside-{step}.jsonl")
    i = 1
    while aside.exists():
        aside, i = path.with_name(f"{stem}.set-aside-{step}-{i}.jsonl"), i + 1
    with files.atomic(aside) as f:
        f.write(b"".join(x + b"\n" for x in later + torn))
    with files.atomic(path) as f:
        f.write(b"".join(x + b"\n" for x in keep))
    what = [f"{len(later)} line(s) after step {step} (the checkpoint's)"] if later else []
    what += [f"{len(torn)} torn line(s)"] if torn else []
    return f"note: moved {' and '.join(what)} of {path.name} to {aside.name}"


# ---- what a run writes while it trains -----------------------------------------------------

class Metrics:
    """metrics.jsonl: one JSON line per step, flushed as it is written."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.f = open(path, "a", buffering=1, encoding="utf-8")
        except OSError as e:
            e.filename = str(path)
            raise

    def on_step(self, trainer, rec: dict, last: bool) -> None:
        try:
            self.f.write(files.dumps(rec) + "\n")
        except OSError as e:
            e.filename = str(self.path)
            raise

    def on_end(self, trainer, history) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass  # a line the disk refused: the error was raised when it was written


class Checkpoints:
    """last.pt every ``every`` steps and at the end; best.pt at the best validation loss."""

    def __init__(self, out: Path, config: dict, tokenizer, every: int, resumed: dict | None):
        self.out, self.config, self.every = out, config, every
        self.tokenizer = tokenizer.to_dict() if tokenizer is not None else None
        self.best = float((resumed or {}).get("best_val_loss", math.inf))
        self.elapsed0 = float((resumed or {}).get("elapsed", 0.0))
        self.last_step = int(resumed["step"]) if resumed else None
        self.start = time.perf_counter()

    def save(self, trainer, name: str) -> None:
        for p in trainer.model.parameters():
            if not bool(torch.isfinite(p).all()):
                return  # never overwrite a good checkpoint with broken weights
        checkpoint.save(self.out / name, {
            **trainer.state_dict(), "config": self.config, "tokenizer": self.tokenizer,
            "elapsed": self.elapsed0 + time.perf_counter() - self.start,
            "best_val_loss": self.best})
        if name == checkpoint.LAST:
            self.last_step = trainer.step

    def on_step(self, trainer, rec: dict, last: bool) -> None:
        if "val_loss" in rec and rec["val_loss"] < self.best:
            self.best = rec["val_loss"]
            self.save(trainer, checkpoint.BEST)
        if (self.every and trainer.step % self.every == 0) or last:
            self.save(trainer, checkpoint.LAST)

    def on_end(self, trainer, history) -> None:
        if history.stopped != "non-finite" and self.last_step != trainer.step:
            self.save(trainer, checkpoint.LAST)


class TensorBoard:
    """Scalars to out/tensorboard (only when tensorboard is installed)."""

    def __init__(self, writer):
        self.writer = writer

    def on_step(self, trainer, rec: dict, last: bool) -> None:
        for k, v in rec.items():
            if k != "step" and isinstance(v, (int, float)):
                self.writer.add_scalar(k.replace("val_", "val/"), v, trainer.step)

    def on_trace(self, trainer, record: dict) -> None:
        """Per layer (rows and steps averaged): ‖∂L/∂h_t‖ at the first and last step (and
        ‖∂L/∂c_t‖), each gate's mean and fraction saturated."""
        for name, r in record["layers"].items():
            tag = f"telemetry/{name or 'layer'}/"
            for field in ("grad_h", "grad_c"):
                if r[field] is not None:
                    self.writer.add_scalar(tag + f"{field}_first", float(r[field][:, 0].mean()),
                                           record["step"])
                    self.writer.add_scalar(tag + f"{field}_last", float(r[field][:, -1].mean()),
                                           record["step"])
            for gate, stats in r["gates"].items():
                for stat, v in stats.items():
                    self.writer.add_scalar(tag + f"{gate}_{stat}", float(v.mean()), record["step"])

    def on_end(self, trainer, history) -> None:
        self.writer.close()


def tensorboard(out: Path, step: int) -> TensorBoard | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is an optional extra
        return None
    try:
        return TensorBoard(SummaryWriter(str(out / "tensorboard"), purge_step=step or None))
    except Exception:
        return None
