"""Notebook widgets: a trajectory viewer linked to plots of per-frame quantities, and an
attention viewer for geometric-attention models.

>>> from mlffkit.widgets import TrajectoryViewer
>>> TrajectoryViewer(ds, time_fs=0.5)            # doctest: +SKIP
>>> AttentionViewer(attention_model, atoms)        # doctest: +SKIP
"""

from mlffkit.widgets.attention import AttentionViewer
from mlffkit.widgets.linking import FrameLink
from mlffkit.widgets.trajectory import TrajectoryViewer

__all__ = ["AttentionViewer", "FrameLink", "TrajectoryViewer"]
