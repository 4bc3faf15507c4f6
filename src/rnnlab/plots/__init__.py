"""Figures: every plot_* returns a ``matplotlib.figure.Figure`` (no pyplot global state, no
display); save it with ``fig.savefig(path, dpi=110)``.

Three files: ``probes`` (the probes' companions), ``studies`` (the studies' figures) and
``training`` (learning curves and telemetry heat maps from a run's logs).
"""

from .probes import (  # noqa: F401
    plot_gate_stats,
    plot_jacobian_norms,
    plot_lyapunov,
    plot_spectrum,
)
from .studies import (  # noqa: F401
    plot_bars,
    plot_curves,
    plot_heatmap,
    plot_paired,
    plot_panels,
)
from .training import (  # noqa: F401
    plot_gate_history,
    plot_learning_curves,
    plot_telemetry_heatmap,
    plot_telemetry_side_by_side,
)
