"""The engine's fast paths against torch.nn: float32 (where the CPU GEMMs go to oneDNN, see
rnnlab.gemm), widths on both sides of gemm.SMALL_WIDTH, and the gemm helpers themselves."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab import gemm

# every test runs on both engine paths: the Python loops and the native kernels
pytestmark = pytest.mark.usefixtures("kernels")


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("H", [8, gemm.SMALL_WIDTH])
def test_float32_engine_matches_torch(mode, H):
    T, B = 5, 3
    ref = getattr(torch.nn, mode)(H, H, num_layers=2, bidirectional=True)
    ours = getattr(rnnlab, mode)(H, H, num_layers=2, bidirectional=True, backend="engine")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, H, requires_grad=True)
    results = []
    for m in (ref, ours):
        packed = pack_padded_sequence(x, torch.tensor([4, 5, 2]), enforce_sorted=False)
        out = pad_packed_sequence(m(packed)[0])[0]
        grads = torch.autograd.grad(out.square().sum(), [x, *m.parameters()])
        results.append((out, *grads))
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gemm_helpers(dtype):
    x, w, b = (torch.randn(6, 4, dtype=dtype), torch.randn(5, 4, dtype=dtype),
               torch.randn(5, dtype=dtype))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(gemm.linear(x, w, b), x @ w.T + b, **tol)
    y = torch.randn(6, 5, dtype=dtype)
    for small in (False, True):
        torch.testing.assert_close(gemm.adder(w, small)(y.clone(), x), y + x @ w.T, **tol)
        out = torch.empty(6, 5, dtype=dtype)
        torch.testing.assert_close(gemm.linear_add(out, y, x, w, small), y + x @ w.T, **tol)
    a = torch.randn(6, 3, dtype=dtype)
    torch.testing.assert_close(gemm.t_matmul(a, x), a.T @ x, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gemm_helpers_with_empty_operands(dtype):
    """No oneDNN primitive exists for a zero-size dimension; the helpers give torch's empty or
    zero results (an empty batch, a cell of hidden or input size 0)."""
    for n, k, m in ((0, 4, 5), (6, 0, 5), (6, 4, 0), (0, 0, 0)):
        x, w = torch.randn(n, k, dtype=dtype), torch.randn(m, k, dtype=dtype)
        b = torch.randn(m, dtype=dtype)
        torch.testing.assert_close(gemm.linear(x, w, b), x @ w.T + b)
        torch.testing.assert_close(gemm.linear_add(torch.empty(n, m, dtype=dtype),
                                                   torch.ones(n, m, dtype=dtype), x, w),
                                   torch.ones(n, m, dtype=dtype) + x @ w.T)
        a = torch.randn(n, 3, dtype=dtype)
        torch.testing.assert_close(gemm.t_matmul(a, x), a.T @ x)


@pytest.mark.parametrize("packing", ["dense", "packed"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_large_problem_backward_matches_torch(monkeypatch, packing, bidirectional):
    """The LSTM backward forms its local derivatives step by step when T·B·4H is above
    LSTMStep.SMALL_LOCALS (a large problem); forcing that path on a small one checks it against
    torch.nn with copied weights (it once read h_{t-1} where c_{t-1} belongs)."""
    from rnnlab import native
    from rnnlab.cells import LSTMStep

    monkeypatch.setenv(native.ENV, "python")  # the Python engine's path (the kernels have theirs)
    monkeypatch.setattr(LSTMStep, "SMALL_LOCALS", 0)
    ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=bidirectional).double()
    ours = rnnlab.LSTM(3, 4, num_layers=2, bidirectional=bidirectional, backend="engine").double()
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 3, generator=g, dtype=torch.double)
    D = 2 if bidirectional else 1
    state = [torch.randn(2 * D, 3, 4, generator=g, dtype=torch.double) for _ in range(2)]
    results = []
    for m in (ref, ours):
        xi = x.clone().requires_grad_()
        si = [s.clone().requires_grad_() for s in state]
        inp = xi if packing == "dense" else pack_padded_sequence(xi, torch.tensor([5, 2, 4]),
                                                                 enforce_sorted=False)
        out, (h, c) = m(inp, tuple(si))
        out = out if packing == "dense" else out.data
        loss = (out * out).sum() + (h * c).sum()
        results.append((out, h, c, *torch.autograd.grad(loss, [xi, *si, *m.parameters()])))
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
