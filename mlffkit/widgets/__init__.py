"""Notebook widgets: a trajectory viewer linked to plots of per-frame quantities.

>>> from mlffkit.widgets import TrajectoryViewer
>>> TrajectoryViewer(ds, time_fs=0.5)            # doctest: +SKIP
"""

from mlffkit.widgets.linking import FrameLink
from mlffkit.widgets.trajectory import TrajectoryViewer

__all__ = ["FrameLink", "TrajectoryViewer"]
