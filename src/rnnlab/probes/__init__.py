"""Diagnostics: Jacobian products, spectra, Lyapunov exponents, gate statistics, memory length.

The theory explains vanishing and exploding gradients with a handful of quantities; these
probes compute each of them for any rnnlab ``RNN`` / ``LSTM`` / ``GRU`` (trained or not), or for
a model that contains one (``model.backbone``, or the single rnnlab recurrent layer inside it).

What ``x`` is: exactly what the module takes, as torch does.

- For a recurrent layer: its input in its own layout, (T, B, I), or (B, T, I) when the layer
  has ``batch_first=True``, or one unbatched sequence (T, I), or a PackedSequence; and ``hx``
  its initial state as it takes it (h_0, or (h_0, c_0) for the LSTM).
- For a model: exactly what the model's ``forward`` takes first (token ids (B, T) for a language
  model or classifier, features (B, T, F) for a regressor). The probe calls ``model(x)`` once
  (no grad) with a hook on the recurrent layer that captures the layer's real input (after the
  embedding) and initial state, then stops the forward pass. Dropout is not applied.

Every probe re-runs the recurrence itself from the layer's weights, by default in float64, with
the reference equations of ``rnnlab.equations`` (notation of DESIGN.md, torch's gate orders).

Files: ``trajectory`` (finding the layer and its input, running it), ``jacobians`` (Jacobian
products, spectra, Lyapunov exponents, memory length), ``gates`` (gate statistics),
``checklist`` (the debugging checklist; ``rnnlab.runs.inspect_run`` runs it on a saved run).
"""

from ..telemetry import SATURATION
from .checklist import checklist
from .gates import HIST_BINS, gate_stats
from .jacobians import (
    jacobian_norms,
    lyapunov_spectrum,
    memory_length,
    memory_time_scale,
    spectral,
)
from .trajectory import find_recurrent

__all__ = ["find_recurrent", "jacobian_norms", "spectral", "lyapunov_spectrum",
           "memory_time_scale", "gate_stats", "memory_length", "checklist", "SATURATION",
           "HIST_BINS"]
