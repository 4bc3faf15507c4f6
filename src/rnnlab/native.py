"""The engine's native CPU kernels: which path runs, building them once, calling them.

``rnnlab/kernels/*.cpp`` is the engine's whole time loop (forward and BPTT backward) for one layer
and direction in compiled code: per step one register-blocked product with W_hh and the cell's
pointwise step fused into it (see ``kernels/recurrence.cpp``). ``engine.py`` asks ``kernel_for(x)``
and runs these kernels when it returns one, its own Python loop otherwise; both fill the same
buffers with the same equations, so everything downstream (telemetry, weight gradients) is shared.

Which path: the environment variable ``RNNLAB_KERNELS``, read at every call,

- ``auto`` (default): native on CPU float32 / float64 tensors if the kernels can be built, else
  the Python engine (saying so once, in one line on stderr);
- ``native``: native on CPU float32 / float64, and an error if they cannot be built;
- ``python``: always the Python engine.

CUDA (and any other device or dtype) always runs the Python engine.

Building: on first use ``torch.utils.cpp_extension`` compiles the sources (with ninja and the
system's C++ compiler, for this machine's CPU: ``-O3 -march=native``, ATen's widest vector
width) into the torch extensions cache, once; it prints one line saying so and how long it took.
The cache key covers the sources, the flags, torch, Python and the CPU, so a change of any
rebuilds into a new directory and never reuses a stale library. Concurrent processes (pytest-xdist
workers) build once: the others wait on a file lock, then load the built library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
import time
from pathlib import Path

import torch
from torch import Tensor

ENV = "RNNLAB_KERNELS"
CHOICES = ("auto", "native", "python")
_SOURCES = ("recurrence.cpp", "cells.h", "tile.h", "vecmath.h")
_MODES = {"RNN_TANH": 0, "RNN_RELU": 1, "LSTM": 2, "GRU": 3}


def choice() -> str:
    """The path asked for by ``RNNLAB_KERNELS`` (default ``auto``)."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(CHOICES)}")
    return value


def say(message: str) -> None:
    """One line on stderr, rnnlab's way of telling about the kernels."""
    print(f"rnnlab: {message}", file=sys.stderr, flush=True)


# -- building ------------------------------------------------------------------------------
def _flags() -> list[str]:
    cap = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", ...
    if os.name == "nt":
        return ["/O2", "/DCPU_CAPABILITY=DEFAULT"]
    flags = ["-O3", "-fno-math-errno"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-march=native")
        if cap in ("AVX2", "AVX512"):
            flags += [f"-DCPU_CAPABILITY={cap}", f"-DCPU_CAPABILITY_{cap}"]
            return flags
    return flags + ["-DCPU_CAPABILITY=DEFAULT"]


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(keep)
    except OSError:
        return platform.processor()


def _key(sources: list[Path], flags: list[str]) -> str:
    h = hashlib.sha256()
    for part in (*(p.read_bytes() for p in sources), *map(str.encode, flags),
                 torch.__version__.encode(), sys.version.encode(), _cpu_id().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _cache_root() -> Path:
    base = os.environ.get("TORCH_EXTENSIONS_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch_extensions"


class _Lock:
    """An exclusive advisory lock on a file (released by the OS if the process dies)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.file = open(self.path, "a+")  # noqa: SIM115 - held until __exit__
        try:
            import fcntl
            fcntl.flock(self.file, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): cpp_extension's own lock still applies
            pass
        return self

    def __exit__(self, *exc):
        self.file.close()  # closing releases the lock


def _compile(name: str, sources: list[Path], flags: list[str], where: Path) -> None:
    from torch.utils import cpp_extension

    cpp_extension.load(name=name, sources=[str(sources[0])], extra_cflags=flags,
                       build_directory=str(where), is_python_module=False, verbose=False)


def _library(where: Path, name: str) -> Path | None:
    for suffix in (".so", ".pyd", ".dll", ".dylib"):
        if (where / (name + suffix)).exists():
            return where / (name + suffix)
    return None


def _build():
    """Build (once per machine and source version) and load the kernels; their op namespace."""
    here = Path(__file__).parent / "kernels"
    sources = [here / s for s in _SOURCES]
    flags = _flags()
    name = f"rnnlab_kernels_{_key(sources, flags)}"
    where = _cache_root() / name
    where.mkdir(parents=True, exist_ok=True)
    with _Lock(where / "rnnlab.lock"):
        lib = _library(where, name)
        if lib is None:
            stale = where / "lock"  # cpp_extension's own lock, left by a killed build
            if stale.exists():
                stale.unlink()
            t0 = time.perf_counter()
            _compile(name, sources, flags, where)
            say(f"compiled the native CPU kernels in {time.perf_counter() - t0:.1f} s "
                f"(once; cached in {where})")
            lib = _library(where, name)
            if lib is None:
                raise RuntimeError(f"no library in {where} after the build")
        if not hasattr(torch.ops.rnnlab, "recurrence_forward"):
            torch.ops.load_library(str(lib))
    return torch.ops.rnnlab


class _State:
    """The process's one attempt at the kernels: their ops, or why they are not there."""

    def __init__(self):
        self.tried, self.ops, self.error = False, None, None
        self.lock = threading.Lock()

    def get(self, required: bool):
        with self.lock:
            return self._get(required)

    def _get(self, required: bool):
        if not self.tried:
            self.tried = True
            try:
                self.ops = _build()
            except Exception as e:  # noqa: BLE001 - any failure: the Python engine runs
                self.error = _reason(e)
                if not required:
                    say(f"native CPU kernels unavailable ({self.error}); "
                        "running the Python engine")
        if self.ops is None and required:
            raise RuntimeError(f"{ENV}=native, but the native CPU kernels could not be built: "
                               f"{self.error}")
        return self.ops


def _reason(e: Exception) -> str:
    """One line on why a build failed: the compiler's first error if it said one."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = next((ln for ln in lines if "error:" in ln), lines[0] if lines else "")
    return f"{type(e).__name__}: {said[:200]}" if said else type(e).__name__


_state = _State()


def available() -> bool:
    """Whether the native kernels are built and loaded (building them if not tried yet)."""
    return _state.get(required=False) is not None


def kernel_for(x: Tensor):
    """The native kernels if they should run the engine on ``x``, else None (Python engine)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    which = choice()
    if which == "python":
        return None
    ops = _state.get(required=which == "native")
    return None if ops is None else Kernel(ops)


# -- calling -------------------------------------------------------------------------------
class Kernel:
    """One layer and direction through the native kernels, in the engine's buffers."""

    def __init__(self, ops):
        self.ops = ops

    def forward(self, step, x, h0, c0, w_ih, w_hh, b_ih, b_hh, sizes, reverse, saturation):
        """Returns (A, HS, CS, AUX, h_n, c_n, stats) as engine.py's loop leaves them: A the
        gates (T, B, G) (RNN: h_t, a view of HS), stats (T, 2, n) sums and saturated counts
        (None without ``saturation``, telemetry's (centre, limit))."""
        from .gemm import linear

        T, B, I = x.shape
        b = b_ih if step.mode == "GRU" else _sum(b_ih, b_hh)  # GRU: b_hh stays in the loop
        XW = linear(x.reshape(T * B, I), w_ih, b).view(T, B, w_ih.shape[0])  # one GEMM, all t
        centre, limit = (v.flatten() for v in saturation) if saturation else (None, None)
        HS, CS, AUX, h_n, c_n, stats = self.ops.recurrence_forward(
            _MODES[step.mode], XW, h0, c0 if step.has_cell else None, w_hh,
            b_hh if step.mode == "GRU" else None, list(sizes), reverse, centre, limit)
        wr = slice(0, T) if reverse else slice(1, T + 1)
        A = HS[wr] if step.n_chunks == 1 else XW
        return A, HS, CS, AUX, h_n, c_n, stats

    def backward(self, step, A, HS, CS, AUX, w_hh, d_out, d_hn, d_cn, sizes, reverse, record):
        """Returns (D_in, D_hid, DH, DC, dh0, dc0): ∂L/∂a on the input and hidden sides (the
        same tensor but for the GRU), zero on padding rows; the ∂L/∂h slots (with ``record``,
        holding the total ∂L/∂h_t of every active row) and the LSTM's ∂L/∂c_t (``record``)."""
        Q, DIN, DH, DC, dh0, dc0 = self.ops.recurrence_backward(
            _MODES[step.mode], A, HS, CS, AUX, w_hh, d_out, d_hn, d_cn, list(sizes), reverse,
            record)
        return (DIN if step.mode == "GRU" else Q), Q, DH, DC, dh0, dc0


def _sum(b_ih, b_hh):
    if b_ih is None:
        return b_hh
    return b_ih if b_hh is None else b_ih + b_hh
