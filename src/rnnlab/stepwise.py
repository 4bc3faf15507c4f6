"""A language model's recurrent layers, step by step in autograd, on one text: every state and gate,
the loss at every token, and how the loss at a token reaches back to the earlier ones.

    rec = stepwise.record(model, ids)          # ids (T,): one forward, every step kept
    rec.layers[k].h, .c, .gates["f"]           # (T, N): per layer·direction k, each unit
    rec.loss                                   # (T,): L_t = −log p(x_t | x_<t), NaN at t = 0
    g = stepwise.gradients(model, ids, positions=[40, 80], window=32, rec=rec)
    g.saliency                                 # (P, W): ‖∂L_s/∂x_t‖₂ for t = s − W .. s − 1
    g.grad_h[k], g.grad_c[k]                   # (P, W): ‖∂L_s/∂h_t‖₂, ‖∂L_s/∂c_t‖₂

The model is any ``nn.Module`` mapping token ids (1, T) to next-token logits (1, T, V) (or a
tuple whose first item they are, as ``rnnlab.models.LanguageModel`` returns), holding one or
more recurrent layers: rnnlab's RNN / LSTM / GRU, torch.nn's, or rnnlab's MinGRU / MinLSTM /
LRU. While it runs here each such layer runs its equations one step at a time
(``rnnlab.equations.unroll``; the scan layers' own sequential step), so every h_t, c_t and gate
is a tensor of its own: what the layer would compute, with the module's own parameters. The
model is put in eval mode for the duration (no dropout) and given back as it was; no parameter
gradient is accumulated (``torch.autograd.grad`` asks only for the states and inputs).

x_t is what the first recurrent layer reads at step t (an rnnlab LM's embedding of token t);
L_s = −log p(x_s | x_<s) the loss at token s, computed from the output at step s − 1.

How the gradients are computed, and what it costs. ‖∂L_s/∂x_t‖ for every pair (s, t) needs one
backward pass per s: T backward passes through up to T steps. Instead, for the chosen
``positions`` s, in batches of rows (one row per s, so one backward serves a whole batch), each
row runs only the ``window`` W steps t = s − W .. s − 1, *starting from the state the full
forward had at t = s − W − 1* (its h and c, in every layer). That restart gives the very same
forward values, so ∂L_s/∂x_t and ∂L_s/∂h_t are exact for t in the window (checked: each row's
loss must equal L_s from the full forward, or the windows are given up for full-length rows);
what lies further back than W steps is not computed. The cost is P·W steps instead of T². A
bidirectional layer (whose state at t depends on the tokens after t) cannot be restarted: then
each row is the whole text and the arrays cover every t (``full``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .equations import Steps, unroll
from .errors import UserError
from .interop import attached, recurrent_layers
from .scanrnn import ScanRNNBase
from .stack import time_major
from .telemetry import saturated

GATE_NAMES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n"), "RNN": (),
              "MinGRU": ("z",), "MinLSTM": ("i", "f"), "LRU": ()}
MEMORY_BUDGET = 256 * 2**20  # bytes of autograd graph one batch of rows may hold (about)


@dataclass
class LayerStates:
    """One layer and direction of one recurrent module, over the text, every unit (T, N)."""

    module: str                 # the module's qualified name ("" for the model itself)
    mode: str                   # "LSTM", "GRU", "RNN", "MinGRU", "MinLSTM", "LRU"
    layer: int
    direction: int
    nonlinearity: str           # the RNN's φ ("tanh" or "relu"); "tanh" otherwise
    h: np.ndarray               # h_t (the LRU's complex state: its real part)
    c: np.ndarray | None        # the LSTM's c_t
    gates: dict[str, np.ndarray]  # post-activation gates, torch's names and order

    @property
    def label(self) -> str:
        where = self.module or "model"
        return f"{where} · layer {self.layer}" + (" · reverse" if self.direction else "")

    def saturation(self) -> dict[str, np.ndarray]:
        """{gate: (T,) count of units saturated at step t} (``telemetry.saturated``'s rule; the
        RNN's "h" when it has no gates)."""
        gates = self.gates or ({"h": self.h} if self.mode == "RNN" else {})
        return {g: saturated(g, torch.from_numpy(v), self.nonlinearity).sum(1).numpy()
                for g, v in gates.items()}


@dataclass
class Record:
    """What ``record`` returns."""

    ids: Tensor                 # (T,)
    loss: np.ndarray            # (T,) float64 L_t = −log p(x_t | x_<t); NaN at t = 0
    predicted: np.ndarray       # (T,) the most likely token at t (from step t − 1); −1 at t = 0
    predicted_p: np.ndarray     # (T,) its probability
    layers: list[LayerStates]
    bidirectional: bool
    restart: dict = field(repr=False, default_factory=dict)  # module -> [(h_all, c_all, h0, c0)]


@dataclass
class Gradients:
    """What ``gradients`` returns: rows = positions s, columns = steps t."""

    positions: list[int]
    window: int                 # W; in "full" mode W = T and column t is step t
    mode: str                   # "window": column w is t = s − W + w; "full": column t is t
    saliency: np.ndarray        # (P, W) ‖∂L_s/∂x_t‖₂ (NaN where t < 0)
    grad_h: list[np.ndarray]    # per layer·direction (as Record.layers): ‖∂L_s/∂h_t‖₂
    grad_c: list[np.ndarray | None]
    note: str = ""              # why the windows were given up, if they were

    def start(self, s: int) -> int:
        """The step t of column 0 in row s."""
        return s - self.window if self.mode == "window" else 0


# ---- every recurrent layer, step by step ---------------------------------------------------------

def _scan_unroll(m: ScanRNNBase, input: Tensor, hx):
    """A scan layer (MinGRU / MinLSTM / LRU) one step at a time (its sequential equations):
    (output, h_n, [Steps per layer·direction]) as ``equations.unroll`` gives them."""
    x, batched = time_major(input, m.batch_first, type(m).__name__)
    m._check_input(x)
    T, D = x.shape[0], m.num_directions
    h0 = m._initial_state(hx, x, batched, None)  # (L·D, B, N)
    steps, h_n, inp = [], [], x
    for layer in range(m.num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            p = m._project(layer, d, inp)  # (T, B, ·): every step's input projection
            gates = m._coefficients(layer, d, p, True)[2]  # {gate: (T, B, N)}
            order = list(range(T - 1, -1, -1) if d else range(T))
            h, hs = h0[k], []
            for t in order:
                h = m._recur(layer, d, p[t], h)  # h_t = a_t ⊙ h_{t−1} + b_t
                hs.append(h)
            steps.append(Steps(layer, d, hs, None, {g: [v[t] for t in order]
                                                    for g, v in gates.items()}, h0[k], None))
            h_n.append(hs[-1])
            outs.append(m._readout(layer, d, torch.stack(hs[::-1] if d else hs), inp))
        inp = outs[0] if D == 1 else torch.cat(outs, 2)
    out, h_n = inp, torch.stack(h_n)
    if not batched:
        out, h_n = out.squeeze(1), h_n.squeeze(1)
    elif m.batch_first:
        out = out.transpose(0, 1)
    return out, h_n, steps


class _StepByStep:
    """For the ``with`` block, every recurrent layer of ``model`` runs step by step and leaves its
    ``Steps`` (and the input it read) in ``calls``; ``hx`` {module name: initial state} replaces
    the state the model passes; ``input_grad``: the first layer's input becomes a leaf whose
    gradient can be asked for."""

    def __init__(self, model: nn.Module, hx: dict | None = None, input_grad: bool = False):
        try:
            self.modules = recurrent_layers(model)
        except ValueError as e:
            raise UserError(str(e)) from None
        if not self.modules:
            raise UserError(f"{type(model).__name__} has no recurrent layer (rnnlab's or "
                            "torch.nn's RNN / LSTM / GRU, or MinGRU / MinLSTM / LRU): there is "
                            "no state to show step by step")
        self.hx, self.input_grad = hx, input_grad
        self.calls: dict[str, tuple[Tensor, list[Steps]]] = {}

    def __enter__(self):
        for name, m in self.modules.items():
            if attached(m):
                raise RuntimeError(f"{name or type(m).__name__} is being traced: explore it "
                                   "outside rnnlab.trace")
        for name, m in self.modules.items():
            vars(m)["forward"] = lambda input, hx=None, _n=name, _m=m: self._run(_n, _m, input, hx)
        return self

    def __exit__(self, *exc):
        for m in self.modules.values():
            vars(m).pop("forward", None)
        return False

    def _run(self, name, m, input, hx):
        if isinstance(input, PackedSequence):
            raise UserError("the explorer reads one text: the model must not pack it "
                            "(PackedSequence) before its recurrent layer")
        if name in self.calls:
            raise UserError(f"{name or 'the recurrent layer'} runs more than once in one "
                            "forward: the explorer shows a layer that reads the text once")
        if self.hx is not None:
            hx = self.hx[name]
        if self.input_grad and not self.calls:
            input = input.detach().requires_grad_(True)
        if isinstance(m, ScanRNNBase):
            out, h_n, steps = _scan_unroll(m, input, hx)
            result = (out, h_n)
        else:
            u = unroll(m, input, hx)
            steps = u.steps
            result = (u.output, (u.h_n, u.c_n)) if u.c_n is not None else (u.output, u.h_n)
        self.calls[name] = (input, steps)
        return result


@contextmanager
def _evaluating(model: nn.Module):
    """Eval mode (no dropout) and, on the CPU, one thread: the steps are small operations, which
    one thread runs faster than several contending ones (as ``rnnlab.studies`` does)."""
    was = [(m, m.training) for m in model.modules()]
    threads = torch.get_num_threads()
    model.eval()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        for m, training in was:
            m.train(training)


def _logits(out, B: int, T: int) -> Tensor:
    logits = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(logits, Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != (B, T):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise UserError(f"the model must map token ids ({B}, {T}) to next-token logits "
                        f"({B}, {T}, vocabulary), got {shape}")
    return logits


def _mode(m: nn.Module) -> str:
    return m.mode if isinstance(m, ScanRNNBase) else ("RNN" if m.mode.startswith("RNN") else
                                                      m.mode)


def _time_order(v: list[Tensor], direction: int) -> list[Tensor]:
    return v[::-1] if direction else v


def _numpy(v: Tensor) -> np.ndarray:
    """float32 and float64 as they are; other dtypes (bfloat16, float16) as float32."""
    return (v if v.dtype in (torch.float32, torch.float64) else v.float()).cpu().numpy()


def record(model: nn.Module, ids: Tensor) -> Record:
    """One forward of the token ids (T,) with every recurrent layer step by step: the states and
    gates of every unit at every step, the loss and the model's top prediction at every token."""
    ids = ids.reshape(-1).long().to(next(model.parameters()).device)
    T = ids.numel()
    if T < 2:
        raise UserError(f"the text needs at least 2 tokens, got {T}")
    with _evaluating(model), torch.no_grad(), _StepByStep(model) as sbs:
        logits = _logits(model(ids.view(1, T)), 1, T)[0].double()  # (T, V)
    logp = torch.log_softmax(logits[:-1], -1)  # predicts tokens 1..T−1
    loss = np.full(T, np.nan)
    loss[1:] = (-logp.gather(1, ids[1:, None]).squeeze(1)).cpu().numpy()
    p, top = logp.exp().max(-1)
    predicted = np.concatenate([[-1], top.cpu().numpy()]).astype(np.int64)
    predicted_p = np.concatenate([[np.nan], p.cpu().numpy()])
    layers, restart, bidirectional = [], {}, False
    for name, (_, steps) in sbs.calls.items():
        m = sbs.modules[name]
        bidirectional |= bool(m.bidirectional)
        mode, restart[name] = _mode(m), []
        for st in steps:
            h = torch.stack(_time_order(st.h, st.direction))[:, 0]  # (T, N)
            c = None if st.c is None else torch.stack(_time_order(st.c, st.direction))[:, 0]
            restart[name].append((h, c, st.h0[0], None if st.c0 is None else st.c0[0]))
            gates = {g: _numpy(torch.stack(_time_order(v, st.direction))[:, 0])
                     for g, v in st.gates.items()}
            layers.append(LayerStates(
                name, mode, st.layer, st.direction, getattr(m, "nonlinearity", "tanh"),
                _numpy(h.real if h.is_complex() else h), None if c is None else _numpy(c),
                gates))
    return Record(ids, loss, predicted, predicted_p, layers, bidirectional, restart)


def _initial_states(rec: Record, module, starts: list[int]):
    """The state entering step a of the text, for each row's a (in ``starts``), every layer and
    direction of ``module``: (L·D, B, N), or (h, c) for the LSTM."""
    hs, cs = [], []
    for h_all, c_all, h0, c0 in rec.restart[module]:
        hs.append(torch.stack([h_all[a - 1] if a else h0 for a in starts]))
        if c_all is not None:
            cs.append(torch.stack([c_all[a - 1] if a else c0 for a in starts]))
    h = torch.stack(hs)
    return (h, torch.stack(cs)) if cs else h


def _rows_per_batch(rec: Record, n: int) -> int:
    per_step = sum((len(s.gates) + 4) * s.h.shape[1] for s in rec.layers)
    return int(max(1, min(256, MEMORY_BUDGET // max(1, 12 * n * per_step))))


def gradients(model: nn.Module, ids: Tensor, positions, window: int, rec: Record | None = None,
              progress=None) -> Gradients:
    """‖∂L_s/∂x_t‖₂, ‖∂L_s/∂h_t‖₂ (and ‖∂L_s/∂c_t‖₂) for each s in ``positions`` (1 ≤ s < T) and
    the ``window`` steps t = s − W .. s − 1 before it (module doc: how, and what it costs).
    ``progress(done, total)`` is called after each batch of positions."""
    ids = ids.reshape(-1).long().to(next(model.parameters()).device)
    T = ids.numel()
    rec = record(model, ids) if rec is None else rec
    positions = sorted({int(s) for s in positions})
    if positions and not 1 <= positions[0] <= positions[-1] < T:
        raise UserError(f"positions must lie in 1 .. {T - 1} (the tokens that have a loss)")
    window = max(1, min(int(window), T - 1))
    if rec.bidirectional:
        with _evaluating(model):
            return _gradients(model, ids, positions, T, "full", rec, progress,
                              "a bidirectional layer cannot restart inside the text")
    with _evaluating(model):
        try:
            return _gradients(model, ids, positions, window, "window", rec, progress)
        except _NotRestartable as e:
            return _gradients(model, ids, positions, T, "full", rec, progress, str(e))


class _NotRestartable(Exception):
    pass


def _gradients(model, ids, positions, W, mode, rec: Record, progress, note: str = ""
               ) -> Gradients:
    T, P = ids.numel(), len(positions)
    sal = np.full((P, W), np.nan, np.float32)
    grad_h = [np.full((P, W), np.nan, np.float32) for _ in rec.layers]
    grad_c = [None if s.c is None else np.full((P, W), np.nan, np.float32) for s in rec.layers]
    out = Gradients(positions, W, mode, sal, grad_h, grad_c, note)
    rows = _rows_per_batch(rec, W)
    for b0 in range(0, P, rows):
        chunk = positions[b0: b0 + rows]
        starts = [max(0, s - W) if mode == "window" else 0 for s in chunk]
        n = max(s - a for s, a in zip(chunk, starts, strict=True)) if mode == "window" else T
        x_ids = torch.stack([ids[a: a + n] for a in starts])  # (B, n); row b covers a_b ..
        hx = ({name: _initial_states(rec, name, starts) for name in rec.restart}
              if mode == "window" else None)
        with torch.enable_grad(), _StepByStep(model, hx, input_grad=True) as sbs:
            logits = _logits(model(x_ids), len(chunk), n)
        at = torch.tensor([s - 1 - a for s, a in zip(chunk, starts, strict=True)],
                          device=logits.device)
        chosen = logits[torch.arange(len(chunk), device=logits.device), at]  # (B, V)
        target = ids[torch.tensor(chunk, device=ids.device)]
        losses = F.cross_entropy(chosen, target, reduction="none")  # L_s, one per row
        full = torch.from_numpy(rec.loss[chunk]).to(losses)
        tol = 1e-9 if chosen.dtype == torch.float64 else 1e-4
        if not torch.allclose(losses.detach(), full, rtol=tol * 10, atol=tol):
            if mode == "window":
                raise _NotRestartable("restarted from its states the model gives another loss "
                                      "(it is not a recurrent model read left to right)")
            raise RuntimeError("the model's loss changes with the batch it is run in")
        x, _ = next(iter(sbs.calls.values()))
        tensors, where = [x], []  # where: (layer·direction index, "h" or "c", step of the row)
        k = 0
        for _, (_, steps) in sbs.calls.items():
            for st in steps:
                for kind, vs in (("h", st.h), ("c", st.c or [])):
                    for i, v in enumerate(_time_order(vs, st.direction)):
                        if v.requires_grad:
                            tensors.append(v)
                            where.append((k, kind, i))
                k += 1
        grads = torch.autograd.grad(losses.sum(), tensors, allow_unused=True)
        batch_first = next(iter(sbs.modules.values())).batch_first
        gx = grads[0] if batch_first else grads[0].transpose(0, 1)  # (B, n, I)
        norms = {("x", 0): torch.linalg.vector_norm(gx.double(), dim=2).cpu().numpy()}
        for (k, kind, i), g in zip(where, grads[1:], strict=True):
            arr = norms.setdefault((kind, k), np.zeros((len(chunk), n)))
            if g is not None:  # ‖∂L_s/∂h_t‖ (complex states: the complex 2-norm)
                arr[:, i] = torch.linalg.vector_norm(g, dim=-1).double().cpu().numpy()
        for (kind, k), arr in norms.items():
            dest = sal if kind == "x" else grad_h[k] if kind == "h" else grad_c[k]
            for b, (s, a) in enumerate(zip(chunk, starts, strict=True)):
                col0, last = a - out.start(s), (s - a if mode == "window" else n)
                dest[b0 + b, col0: col0 + last] = arr[b, :last]  # steps a .. s − 1 (or all)
        if progress is not None:
            progress(b0 + len(chunk), P)
    return out


def default_positions(T: int, most: int | None) -> list[int]:
    """Every s = 1 .. T − 1 when there are at most ``most`` (None: no limit), else every k-th
    (s = k, 2k, ...), k = ⌈(T − 1) / most⌉; none for ``most`` = 0."""
    if most == 0:
        return []
    if most is None or T - 1 <= most:
        return list(range(1, T))
    k = math.ceil((T - 1) / max(1, most))
    return list(range(k, T, k))
