"""Parallel scans of the diagonal linear recurrence h_t = a_t ⊙ h_{t−1} + b_t.

    h = linear_scan(a, b, h0)              # a, b real or complex; time on dim 0
    h = log_linear_scan(log_a, log_b, h0)  # the same recurrence given log a_t, log b_t (a, b > 0)

Both return every state h_t, t = 0..T−1, shape (T, ...), from the initial state h0 (h_{−1};
zeros when None). ``reverse=True`` runs the recurrence backwards in time,
h_t = a_t ⊙ h_{t+1} + b_t from h_T = h0, and keeps the input's time order.

Why a scan. The step (a, b) maps h to a ⊙ h + b; two steps compose into one,
(a₁, b₁) then (a₂, b₂) = (a₂ ⊙ a₁, a₂ ⊙ b₁ + b₂), and the composition is associative, so all
T prefixes can be computed in O(log T) rounds of elementwise work instead of T dependent steps.

- ``linear_scan`` pairs neighbouring steps (recursive doubling): compose steps 2i and 2i+1,
  scan the T/2 composed steps (h at odd t), then one more step gives h at even t. O(T) work,
  2·log₂T rounds, no division and no logarithm, so it is exact up to rounding for any sign and
  for complex values (the LRU's λ).
- ``log_linear_scan`` is Heinsen's (2023) log-space form, used by minGRU/minLSTM (Feng et al.
  2024): with a*_t = Σ_{s≤t} log a_s,
      log h_t = a*_t + log Σ_{s≤t} exp(log b_s − a*_s)     (a log-cum-sum-exp),
  which never multiplies long chains of small numbers. Its rounding error grows with |a*_t|
  (a float32 a*_t of a few thousand has an absolute error of ~10⁻⁴), so rnnlab applies it to
  chunks of ``chunk`` steps (a* bounded by the chunk) and joins the chunks with the doubling
  scan above: h at a chunk's end is a linear function of h at the previous chunk's end. The
  initial state enters linearly, h_t += exp(a*_t) ⊙ h0, so h0 may have any sign.

Backward. Each is a ``torch.autograd.Function`` whose backward is itself a reverse linear scan
of the adjoint: with g_t = ∂L/∂h_t|local (the gradient arriving at the output h_t),

    δ_t = g_t + conj(a_{t+1}) ⊙ δ_{t+1}             (δ_t: the total ∂L/∂h_t)
    ∂L/∂b_t = δ_t,  ∂L/∂a_t = δ_t ⊙ conj(h_{t−1}),  ∂L/∂h0 = conj(a_0) ⊙ δ_0
    (log form: ∂L/∂log a_t = ∂L/∂a_t ⊙ conj(a_t), ∂L/∂log b_t = δ_t ⊙ b_t)

(conj: torch's convention for complex gradients; a no-op for real tensors). δ_t, the total
gradient reaching h_t through the recurrence, is what ``rnnlab.trace`` records: pass
``on_adjoint`` and it is called once per backward with δ, shape (T, ...), in input time order.
``a`` may be broadcast over time and batch (the LRU's constant λ): its gradient is summed back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

CHUNK = 16  # steps per log-space chunk: keeps |a*| (and the float32 error) small


def scan_(a: Tensor, b: Tensor, reverse: bool = False) -> Tensor:
    """In place: b becomes h, h_t = a_t ⊙ h_{t−1} + b_t from h_{−1} = 0 (``reverse``:
    h_t = a_t ⊙ h_{t+1} + b_t from h_T = 0), time on dim 0, by recursive doubling. ``a`` either
    has b's shape and is used as scratch (writable), or has time dimension 1: one coefficient
    for every step, broadcast, left unchanged. No large allocation: every round works on
    strided views.

    Up-sweep: compose each step with the one before it in time, in place at the later one,
    (a, b)_late ← (a_late a_early, a_late b_early + b_late); recurse on the later steps (one
    coefficient for all steps composes into its square). Then down-sweep: every step left over
    takes h from the step before it, h = a h_prev + b. The first step's coefficient is never
    used (it multiplies the zero initial state).
    """
    const = a.shape[0] == 1
    levels = []
    while b.shape[0] > 1:
        T = b.shape[0]
        if reverse:  # time runs from index T−1 down: pairs (j+1, j), later step j ≡ T (mod 2)
            early, late = slice(T % 2 + 1, T, 2), slice(T % 2, T - 1, 2)
        else:        # pairs (2i, 2i+1), later step 2i+1
            early, late = slice(0, T - T % 2, 2), slice(1, T, 2)
        b[late].addcmul_(a if const else a[late], b[early])     # a₂b₁ + b₂
        levels.append((a, b))
        if const:
            a = a * a                                           # a²
        else:
            a[late].mul_(a[early])                              # a₂a₁
            a = a[late]
        b = b[late]
    for a, b in reversed(levels):
        T = b.shape[0]
        if reverse:  # steps T−3, T−5, ... (and 0 when T is odd) from h_{t+1}
            rest, prev = slice((T - 1) % 2, T - 1, 2), slice((T - 1) % 2 + 1, T, 2)
        else:        # steps 2, 4, ... from h_{t−1}
            rest, prev = slice(2, T, 2), slice(1, T - 1, 2)
        b[rest].addcmul_(a if const else a[rest], b[prev])      # h = a h_prev + b
    return b


def doubling_scan(a: Tensor, b: Tensor, reverse: bool = False) -> Tensor:
    """h_t = a_t ⊙ h_{t−1} + b_t from h_{−1} = 0 (a broadcast to b), a new tensor (no autograd)."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    h = torch.empty(b.shape, dtype=dtype, device=b.device).copy_(b)
    a = _time_major(a, h)
    return scan_(a.to(dtype) if a.shape[0] == 1 else torch.empty_like(h).copy_(a), h, reverse)


def _time_major(a: Tensor, b: Tensor) -> Tensor:
    """a as a view with b's number of dimensions (leading 1s added): time dim 1 = constant."""
    return a.reshape((1,) * (b.dim() - a.dim()) + tuple(a.shape))


def _logcumsumexp(x: Tensor) -> Tensor:
    """log Σ_{s≤t} exp x_s along dim 1, in ⌈log₂ C⌉ rounds of logaddexp over shifted copies
    (Hillis–Steele); the same values as torch.logcumsumexp, whose CPU kernel is a scalar loop
    several times slower."""
    x = x.clone()
    k = 1
    while k < x.shape[1]:
        x[:, k:] = torch.logaddexp(x[:, k:], x[:, :-k])  # the right side is read before writing
        k *= 2
    return x


def _log_chunks(log_a: Tensor, log_b: Tensor, h0: Tensor, chunk: int, reverse: bool) -> Tensor:
    """Heinsen's log-space scan inside chunks of ``chunk`` steps, the chunks joined by the
    doubling scan: h at a chunk's end = (Π a over the chunk) ⊙ h at the previous end + the
    chunk's own sum."""
    if reverse:  # run forward on the time-reversed sequence
        return _log_chunks(log_a.expand_as(log_b).flip(0), log_b.flip(0), h0, chunk,
                           False).flip(0)
    T, rest = log_b.shape[0], log_b.shape[1:]
    C = min(chunk, T)
    n = -(-T // C)
    la = log_a.expand_as(log_b)
    lb = log_b
    if n * C > T:  # padding steps at the end: a = 1, b = 0
        la = torch.cat([la, la.new_zeros(n * C - T, *rest)])
        lb = torch.cat([lb, lb.new_full((n * C - T, *rest), float("-inf"))])
    a_star = la.reshape(n, C, *rest).cumsum(1)                  # a*_t = Σ_{s≤t} log a_s (chunk)
    h = _logcumsumexp(lb.reshape(n, C, *rest) - a_star).add_(a_star).exp_()
    # h: Σ_{s≤t} (Π_{s<r≤t} a_r) b_s within the chunk; carry: Π_{s≤t} a_s within the chunk
    carry = a_star.exp_()
    ends = h[:, -1].clone()                           # state at each chunk's end, from H_{−1} = h0:
    ends[0].addcmul_(carry[0, -1], h0)                # H_c = carry_c ⊙ H_{c−1} + h_c
    ends = scan_(carry[:, -1].clone(), ends)
    h[0].addcmul_(carry[0], h0)                                 # h_t += carry_t ⊙ (state entering
    h[1:].addcmul_(carry[1:], ends[:-1].unsqueeze(1))           #        the chunk)
    return h.reshape(n * C, *rest)[:T]


class _Scan(torch.autograd.Function):
    """(a or log a, b or log b, h0) -> h; backward: the reverse scan of the adjoint."""

    @staticmethod
    def forward(ctx, a, b, h0, log, reverse, chunk, on_adjoint):
        first = -1 if reverse else 0  # the step that reads h0
        if log:
            h = _log_chunks(a, b, h0, chunk, reverse)
            a, b = torch.exp(a), torch.exp(b)  # the backward works with a_t, b_t
        else:
            h = torch.empty(b.shape, dtype=b.dtype, device=b.device).copy_(b)
            a_t = _time_major(a, h)
            h[first].addcmul_(a_t[0 if a_t.shape[0] == 1 else first], h0)  # b_0 + a_0 ⊙ h0
            scan_(a_t if a_t.shape[0] == 1 else torch.empty_like(h).copy_(a_t), h, reverse)
        ctx.log, ctx.reverse, ctx.on_adjoint = log, reverse, on_adjoint
        ctx.save_for_backward(a, b if log else None, h0, h)
        return h

    @staticmethod
    def backward(ctx, g):
        # autograd runs a backward with grad mode on only for create_graph=True (double backward)
        if torch.is_grad_enabled():
            raise RuntimeError("rnnlab.scan computes first derivatives only (its backward works "
                               "in place); double backward (create_graph=True) is not supported")
        a, b, h0, h = ctx.saved_tensors
        reverse, T = ctx.reverse, h.shape[0]
        first = -1 if reverse else 0
        a_t = _time_major(a, h)
        const = a_t.shape[0] == 1
        # δ_t = g_t + conj(a_{t+1}) ⊙ δ_{t+1}: a scan the other way round in time, each step
        # with the coefficient of the step after it (the last step has none: 0)
        nxt, cur = (slice(0, T - 1), slice(1, T)) if reverse else (slice(1, T), slice(0, T - 1))
        if const:
            coef = a_t.conj()
        else:
            coef = torch.empty_like(h)
            coef[cur] = a_t.expand_as(h)[nxt].conj()
            coef[-first - 1] = 0
        delta = scan_(coef, torch.empty_like(h).copy_(g), not reverse)
        if ctx.on_adjoint is not None:
            ctx.on_adjoint(delta)
        # ∂L/∂a_t = δ_t ⊙ conj(h_{t−1}) (h_{t+1} when reverse; h0 for the first step)
        grad_a = torch.empty_like(h) if const else coef  # (reuse the buffer)
        grad_a[nxt] = h[cur].conj()
        grad_a[first] = h0.conj()
        grad_a.mul_(delta)
        a_first = a_t[0 if const else first]
        grad_h0 = a_first.conj() * delta[first]                  # ∂L/∂h0 = conj(a_0) ⊙ δ_0
        if ctx.log:
            grad_a.mul_(a_t.conj())                              # ∂L/∂log a = ∂L/∂a ⊙ conj(a)
            grad_b = delta * b                                   # ∂L/∂log b = δ ⊙ b
        else:
            grad_b = delta                                       # ∂L/∂b = δ
        if grad_a.shape != a.shape:
            grad_a = grad_a.sum_to_size(a.shape)
        if grad_h0.shape != h0.shape:
            grad_h0 = grad_h0.sum_to_size(h0.shape)
        return grad_a, grad_b, grad_h0, None, None, None, None


def _inputs(a: Tensor, b: Tensor, h0: Tensor | None, name: str) -> tuple[Tensor, Tensor]:
    if b.dim() < 1 or b.shape[0] == 0:
        raise ValueError(f"{name}: expected b with a non-empty time dimension 0, "
                         f"got shape {tuple(b.shape)}")
    try:
        a.expand_as(b)
    except RuntimeError:
        raise ValueError(f"{name}: a {tuple(a.shape)} does not broadcast to b "
                         f"{tuple(b.shape)}") from None
    if h0 is None:
        h0 = b.new_zeros(b.shape[1:])
    elif tuple(h0.shape) != tuple(b.shape[1:]):
        raise ValueError(f"{name}: h0 must have shape {tuple(b.shape[1:])} (b without its "
                         f"time dimension), got {tuple(h0.shape)}")
    return a, h0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, *, reverse: bool = False,
                on_adjoint: Callable[[Tensor], None] | None = None) -> Tensor:
    """All states of h_t = a_t ⊙ h_{t−1} + b_t (t = 0..T−1, h_{−1} = h0), by recursive doubling.

    b (T, ...) real or complex; a broadcastable to b (e.g. (T, B, H), or (H,) for a constant
    diagonal); h0 of b[0]'s shape or None (zeros). ``reverse``: h_t = a_t ⊙ h_{t+1} + b_t from
    h_T = h0. ``on_adjoint(δ)`` receives the total ∂L/∂h_t of every step in the backward.
    """
    a, h0 = _inputs(a, b, h0, "linear_scan")
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), h0.dtype)
    return _Scan.apply(a.to(dtype), b.to(dtype), h0.to(dtype), False, reverse, CHUNK,
                       on_adjoint)


def log_linear_scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None, *,
                    reverse: bool = False, chunk: int = CHUNK,
                    on_adjoint: Callable[[Tensor], None] | None = None) -> Tensor:
    """All states of h_t = a_t ⊙ h_{t−1} + b_t given log a_t and log b_t (real: a, b > 0;
    log b = −inf for b = 0), by Heinsen's log-space scan in chunks of ``chunk`` steps. h0 is
    the state itself (any sign), not its log. Returns h (not log h)."""
    if log_a.is_complex() or log_b.is_complex():
        raise TypeError("log_linear_scan takes real logarithms (a, b > 0); use linear_scan for "
                        "complex or signed coefficients")
    log_a, h0 = _inputs(log_a, log_b, h0, "log_linear_scan")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    return _Scan.apply(log_a, log_b, h0.to(log_b.dtype), True, reverse, chunk, on_adjoint)
