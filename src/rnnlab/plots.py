"""Figures: every plot_* returns a ``matplotlib.figure.Figure`` (no pyplot global state, no
display); save it with ``fig.savefig(path, dpi=110)``.

Two sections: the probes' companions (rnnlab.probes) and the studies' figures (rnnlab.studies).
"""

from __future__ import annotations

from matplotlib.figure import Figure

# ---- probes --------------------------------------------------------------------------------

# ---- studies -------------------------------------------------------------------------------
