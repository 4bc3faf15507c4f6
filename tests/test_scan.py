"""rnnlab.scan against a plain loop h_t = a_t ⊙ h_{t−1} + b_t, autograd's gradcheck, and the
adjoint δ_t it reports against retain_grad() on every h_t of that loop."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from rnnlab.scan import doubling_scan, linear_scan, log_linear_scan

D64 = torch.float64


def loop(a, b, h0, reverse=False):
    """The recurrence one step at a time; returns (stack of h_t, list of h_t)."""
    a = a.expand_as(b)
    T = b.shape[0]
    hs, h = [None] * T, h0
    for t in range(T - 1, -1, -1) if reverse else range(T):
        h = a[t] * h + b[t]
        hs[t] = h
    return torch.stack(hs), hs


def coefficients(T, B, H, dtype, positive=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = D64 if dtype in (D64, torch.complex128) else torch.float32
    a = torch.rand(T, B, H, generator=g, dtype=real) * 0.9 + 0.05
    b = torch.randn(T, B, H, generator=g, dtype=real)
    h0 = torch.randn(B, H, generator=g, dtype=real)
    if positive:
        b = b.abs() + 0.1
    if dtype.is_complex:
        phase = torch.rand(T, B, H, generator=g, dtype=real) * 6.28
        a = torch.polar(a, phase)
        b = torch.complex(b, torch.randn(T, B, H, generator=g, dtype=real))
        h0 = torch.complex(h0, torch.randn(B, H, generator=g, dtype=real))
    return a, b, h0


@pytest.mark.parametrize("dtype,tol", [(D64, 1e-10), (torch.float32, 1e-5),
                                       (torch.complex128, 1e-10), (torch.complex64, 1e-5)])
@pytest.mark.parametrize("T", [1, 2, 3, 257, 4096])
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_scan_equals_the_loop(dtype, tol, T, reverse):
    B, H = (1, 2) if T == 4096 else (2, 3)
    a, b, h0 = coefficients(T, B, H, dtype)
    want, _ = loop(a, b, h0, reverse)
    torch.testing.assert_close(linear_scan(a, b, h0, reverse=reverse), want, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(D64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("T", [1, 2, 17, 257, 4096])
@pytest.mark.parametrize("reverse", [False, True])
def test_log_scan_equals_the_loop(dtype, tol, T, reverse):
    B, H = (1, 2) if T == 4096 else (2, 3)
    a, b, h0 = coefficients(T, B, H, dtype, positive=True)
    want, _ = loop(a, b, h0, reverse)  # h0 of either sign: it enters linearly
    got = log_linear_scan(a.log(), b.log(), h0, reverse=reverse)
    torch.testing.assert_close(got, want, rtol=0, atol=tol)


def test_broadcast_coefficient_and_zero_initial_state():
    """A constant diagonal a (H,) as for the LRU's λ; h0 None is zeros; any chunk length."""
    a, b, _ = coefficients(9, 2, 3, torch.complex128)
    lam = a[0, 0]
    want, _ = loop(lam.expand_as(b), b, torch.zeros_like(b[0]))
    torch.testing.assert_close(linear_scan(lam, b), want, rtol=0, atol=1e-12)
    ap, bp, _ = coefficients(9, 2, 3, D64, positive=True)
    want, _ = loop(ap, bp, torch.zeros_like(bp[0]))
    for chunk in (1, 2, 4, 9, 100):
        got = log_linear_scan(ap.log(), bp.log(), chunk=chunk)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(doubling_scan(ap, bp), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 5, 8])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(T, reverse):
    a, b, h0 = (v.requires_grad_() for v in coefficients(T, 2, 3, D64, positive=True))
    assert gradcheck(lambda a, b, h0: linear_scan(a, b, h0, reverse=reverse), (a, b, h0))
    la, lb = (v.detach().log().requires_grad_() for v in (a, b))
    assert gradcheck(lambda la, lb, h0: log_linear_scan(la, lb, h0, reverse=reverse, chunk=3),
                     (la, lb, h0))
    ac, bc, hc = (v.requires_grad_() for v in coefficients(T, 2, 3, torch.complex128))
    assert gradcheck(lambda a, b, h0: linear_scan(a, b, h0, reverse=reverse), (ac, bc, hc))
    lam = ac[0, 0].detach().requires_grad_()  # broadcast: its gradient sums over (T, B)
    assert gradcheck(lambda lam, b: linear_scan(lam, b, reverse=reverse), (lam, bc))


@pytest.mark.parametrize("dtype", [D64, torch.complex128])
@pytest.mark.parametrize("reverse", [False, True])
def test_adjoint_is_the_total_gradient_of_every_state(dtype, reverse):
    """δ_t reported by the backward = h_t.grad of the loop (retain_grad on every h_t), where
    the loss reads every h_t and the final state."""
    T, B, H = 11, 3, 4
    a, b, h0 = (v.requires_grad_() for v in coefficients(T, B, H, dtype))
    w = torch.randn(T, B, H, dtype=dtype)
    seen = []
    h = linear_scan(a, b, h0, reverse=reverse, on_adjoint=seen.append)
    last = 0 if reverse else -1
    loss = lambda h, h_n: (h * w).real.sum() + (h_n.abs() ** 2).sum()
    loss(h, h[last]).backward()
    _, hs = loop(a, b, h0, reverse)
    for v in hs:
        v.retain_grad()
    loss(torch.stack(hs), hs[last]).backward()
    torch.testing.assert_close(seen[0], torch.stack([v.grad for v in hs]), rtol=0, atol=1e-12)


def test_errors():
    b = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="does not broadcast"):
        linear_scan(torch.rand(4, 5, 3), b)
    with pytest.raises(ValueError, match="h0 must have shape"):
        linear_scan(torch.rand(4, 2, 3), b, torch.zeros(3))
    with pytest.raises(ValueError, match="non-empty time"):
        linear_scan(torch.rand(0, 2, 3), torch.randn(0, 2, 3))
    with pytest.raises(TypeError, match="real logarithms"):
        log_linear_scan(torch.zeros(4, 2, 3, dtype=torch.complex64), b.cfloat())
    with pytest.raises(ValueError, match="chunk"):
        log_linear_scan(b, b, chunk=0)
    a = torch.rand(3, 2, requires_grad=True)
    h = linear_scan(a, torch.randn(3, 2))
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(h.sum(), a, create_graph=True)
