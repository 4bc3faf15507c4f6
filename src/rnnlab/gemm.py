"""Matrix products for the engine: y = x Wᵀ (+ b), and y += x Wᵀ.

On CPU in float32 they go to oneDNN (``torch.ops.mkldnn._linear_pointwise``, the kernel torch's
own compiled CPU code uses), which is up to about twice as fast as the default BLAS for the
engine's shapes on recent x86 CPUs, and is what torch.nn.LSTM's fused CPU kernel (oneDNN) gets.
Everywhere else (float64, CUDA, a torch built without oneDNN) they are plain torch.mm / addmm.
For the small per-step products oneDNN only pays off from a width of about 128 (below, the BLAS
call is cheaper), hence ``small``.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _onednn_works() -> bool:
    """The private op exists and agrees with torch.mm on a small case (else: BLAS only)."""
    if _LINEAR is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
        return bool(torch.allclose(_LINEAR(x, w, None, "none", [], ""), x @ w.t(), atol=1e-5)
                    and torch.allclose(_LINEAR(x.t(), x.t(), None, "none", [], ""), x.t() @ x,
                                       atol=1e-5))
    except Exception:  # noqa: BLE001 - any failure means: do not use it
        return False


_ONEDNN = _onednn_works()
SMALL_WIDTH = 128  # per-step products narrower than this stay on BLAS


def _onednn(x: Tensor, w: Tensor) -> bool:
    """oneDNN for float32 on CPU, with no empty operand (oneDNN cannot build a primitive for a
    zero-size dimension: an empty batch, a zero hidden or input size; BLAS returns the empty or
    zero result)."""
    return (_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 == w.dtype
            and x.numel() > 0 and w.numel() > 0)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None, small: bool = False) -> Tensor:
    """x (N, K), w (M, K) -> x Wᵀ + b (N, M), a new tensor."""
    if not small and _onednn(x, w):
        return _LINEAR(x, w, b, "none", [], "")
    return x @ w.t() if b is None else torch.addmm(b, x, w.t())


def linear_add(out: Tensor, y: Tensor, x: Tensor, w: Tensor, small: bool = False) -> Tensor:
    """out = y + x Wᵀ; x (N, K), w (M, K), y and out (N, M)."""
    if not small and _onednn(x, w):
        return torch.add(y, _LINEAR(x, w, None, "none", [], ""), out=out)
    return torch.addmm(y, x, w.t(), out=out)


def adder(w: Tensor, small: bool = False):
    """f(y, x): y += x Wᵀ in place, for a fixed w (M, K) used at every step of a loop (the
    engine never calls it with an empty x: it handles empty batches before its loops)."""
    if not small and _onednn(w, w):
        return lambda y, x: y.add_(_LINEAR(x, w, None, "none", [], ""))
    wt = w.t()
    return lambda y, x: y.addmm_(x, wt)


def t_matmul(a: Tensor, b: Tensor) -> Tensor:
    """aᵀ b for a (N, M), b (N, K) -> (M, K), a sum over the long dimension N (a weight
    gradient Σ_t ∂L/∂a_tᵀ x_t). oneDNN is fastest computing its transpose bᵀ a as a
    linear layer with weight aᵀ."""
    if _onednn(a, b):  # contiguous, as a gradient should be (the copy is of M·K values)
        return _LINEAR(b.t(), a.t(), None, "none", [], "").t().contiguous()
    return a.t() @ b


def is_small(width: int) -> bool:
    return width < SMALL_WIDTH
