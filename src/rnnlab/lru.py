"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for
Long Sequences"), a torch.nn-style layer: the recurrence and its projections.

    h_t = λ ⊙ h_{t−1} + γ ⊙ (B x_t)          h_t ∈ ℂ^N, a diagonal complex recurrence
    y_t = Re(C h_t) + D ⊙ x_t (+ bias)        y_t ∈ ℝ^H

    λ_j = exp(−exp(ν_j) + i·exp(θ_j))        |λ_j| = exp(−exp(ν_j)) < 1 for every ν: stable
    γ_j = exp(γ^log_j), initialised to √(1 − |λ_j|²)

with B = B_re + i·B_im ∈ ℂ^{N×I}, C = C_re + i·C_im ∈ ℂ^{H×N}, D ∈ ℝ^H. As in the paper's code,
ν, θ and γ are stored as logs (``nu_log``, ``theta_log``, ``gamma_log``) and all three are
trained. Because the recurrence is diagonal and input-independent,

    ∂h_T/∂h_t = diag(λ^(T−t)),   ‖∂h_T/∂h_t‖₂ = max_j |λ_j|^(T−t)

exactly: the gradient through time is set by the eigenvalues' moduli alone, which the ring
initialisation puts where the task needs them.

Ring initialisation ("Lemma 3.2"): |λ|² uniform on [r_min², r_max²] and the phase uniform on
[0, max_phase], i.e. with u₁, u₂ ~ U[0, 1],

    ν^log = log(−½ log(u₁ (r_max² − r_min²) + r_min²)),    θ^log = log(max_phase · u₂)

γ normalisation: with x_t white noise, E‖h_t‖² grows like 1/(1 − |λ|²) as |λ| → 1; scaling the
input by γ = √(1 − |λ|²) keeps the state's variance that of the input at initialisation.
Projections initialised as in the paper: B_re, B_im ~ N(0, 1/(2I)) (Glorot, ×2 for the real part
taken at the output), C_re, C_im ~ N(0, 1/N), D ~ N(0, 1).

The paper's D ⊙ x needs the input and output widths to match; where they differ (a first layer
with input_size ≠ hidden_size, or a layer above a bidirectional one), D is a real (H, I) matrix,
initialised N(0, 1/I). ``bias`` (default False, as in the paper) adds a real output bias.
The MLP/GLU, normalisation and residual the paper puts around the LRU belong to a model.

Arguments: torch.nn.RNN's (input_size, hidden_size = H, num_layers, bias, batch_first, dropout,
bidirectional, device, dtype), plus ``state_size`` (N, default H), ``r_min``, ``r_max``,
``max_phase`` and ``scan``. The state is complex: h_0 and h_n are (L·D, B, N) complex tensors.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from .scanrnn import ScanRNNBase


def _check_real(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            (low < value if low_open else low <= value) and value <= high):
        left = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {left}{low}, {high}], got {value!r}")
    return float(value)


class LRU(ScanRNNBase):
    """Linear Recurrent Unit: h_t = λ ⊙ h_{t−1} + γ ⊙ B x_t (complex), y_t = Re(C h_t) + D ⊙ x_t.

    Returns (output (T, B, D·H) real, h_n (L·D, B, N) complex); ``step(x_t, h)`` streams one
    token. ``scan="parallel"`` (recursive doubling over time) or ``"sequential"``.
    """

    mode = "LRU"
    default_bias = False
    state_is_output = False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = False, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 state_size: int | None = None, r_min: float = 0.0, r_max: float = 1.0,
                 max_phase: float = 2 * math.pi, scan: str = "parallel"):
        self_r_max = _check_real("r_max", r_max, 0.0, 1.0, low_open=True)
        self_r_min = _check_real("r_min", r_min, 0.0, self_r_max)
        self_phase = _check_real("max_phase", max_phase, 0.0, math.inf, low_open=True)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, state_size=state_size, scan=scan)
        self.r_min, self.r_max, self.max_phase = self_r_min, self_r_max, self_phase
        if self.state_dtype not in (torch.complex64, torch.complex128):
            raise TypeError(f"LRU needs float32 or float64 parameters, got {dtype}")
        self.reset_parameters()

    def _parameter_shapes(self, layer_in: int) -> dict[str, tuple[int, ...]]:
        N, H = self.state_size, self.hidden_size
        shapes = {"nu_log": (N,), "theta_log": (N,), "gamma_log": (N,),
                  "B_re": (N, layer_in), "B_im": (N, layer_in), "C_re": (H, N), "C_im": (H, N),
                  "D": (H,) if layer_in == H else (H, layer_in)}
        if self.bias:
            shapes["bias"] = (H,)
        return shapes

    @property
    def state_dtype(self) -> torch.dtype:
        """complex64 for float32 parameters, complex128 for float64."""
        dt = self._get("nu_log", 0, 0).dtype
        return {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dt, dt)

    def reset_parameters(self) -> None:
        N = self.state_size
        with torch.no_grad():
            for layer in range(self.num_layers):
                I = self.layer_input_size(layer)
                for d in range(self.num_directions):
                    p = {name: self._get(name, layer, d) for name in self._names}
                    like = p["nu_log"]
                    u1 = torch.rand(N, dtype=torch.float64).clamp_min(1e-12)
                    u2 = torch.rand(N, dtype=torch.float64).clamp_min(1e-12)
                    r2 = u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2  # |λ|² on the ring
                    nu_log = torch.log(-0.5 * torch.log(r2))    # |λ| = exp(−exp(ν^log))
                    p["nu_log"].copy_(nu_log.to(like.device))
                    p["theta_log"].copy_(torch.log(self.max_phase * u2).to(like.device))
                    mod2 = torch.exp(-2 * torch.exp(nu_log))    # |λ|²
                    p["gamma_log"].copy_((0.5 * torch.log1p(-mod2)).to(like.device))  # √(1−|λ|²)
                    for name in ("B_re", "B_im"):
                        p[name].normal_(0.0, 1.0 / math.sqrt(2 * I))
                    for name in ("C_re", "C_im"):
                        p[name].normal_(0.0, 1.0 / math.sqrt(N))
                    p["D"].normal_(0.0, 1.0 if p["D"].dim() == 1 else 1.0 / math.sqrt(I))
                    if self.bias:
                        p["bias"].zero_()

    def eigenvalues(self, layer: int = 0, direction: int = 0) -> Tensor:
        """λ (N,) complex: exp(−exp(ν^log) + i·exp(θ^log))."""
        nu, theta = self._get("nu_log", layer, direction), self._get("theta_log", layer, direction)
        return torch.polar(torch.exp(-torch.exp(nu)), torch.exp(theta))  # |λ| e^{iθ}

    def _project(self, layer: int, d: int, x: Tensor) -> Tensor:
        get = lambda name: self._get(name, layer, d)
        # B x as one real product: rows (Re B_n, Im B_n) interleaved give (…, N, 2) = B x in
        # torch's complex layout, viewed as complex without a copy
        w = torch.stack([get("B_re"), get("B_im")], 1).flatten(0, 1)  # (2N, I)
        bx = torch.view_as_complex(F.linear(x, w).unflatten(-1, (self.state_size, 2)))
        return bx * torch.exp(get("gamma_log"))                # γ ⊙ (B x_t)

    def _coefficients(self, layer, d, p, gates):
        return self.eigenvalues(layer, d), p, {}              # a_t = λ, b_t = γ ⊙ B x_t

    def _recur(self, layer, d, p_t, h):
        return self.eigenvalues(layer, d) * h + p_t           # h_t = λ ⊙ h_{t−1} + γ ⊙ B x_t

    def _readout(self, layer: int, d: int, h: Tensor, x: Tensor) -> Tensor:
        get = lambda name: self._get(name, layer, d)
        # Re(C h) = C_re Re h − C_im Im h: one real product over h's (re, im) pairs, no copy
        w = torch.stack([get("C_re"), -get("C_im")], -1).flatten(-2)  # (H, 2N)
        y = F.linear(torch.view_as_real(h).flatten(-2), w)     # Re(C h)
        D = get("D")
        y = y + (D * x if D.dim() == 1 else F.linear(x, D))   # + D ⊙ x
        return y + get("bias") if self.bias else y

    def _options(self) -> dict:
        return {**super()._options(), "r_min": (self.r_min, 0.0), "r_max": (self.r_max, 1.0),
                "max_phase": (self.max_phase, 2 * math.pi)}
