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


def test_double_backward_is_a_clear_error_not_a_silent_zero():
    m = rnnlab.LSTM(3, 4, backend="engine").double()
    x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True)
    out, _ = m(x)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(out.sum(), x, create_graph=True)
    out, _ = m(x)  # a plain backward still works
    (g,) = torch.autograd.grad(out.sum(), x)
    assert g.shape == x.shape
