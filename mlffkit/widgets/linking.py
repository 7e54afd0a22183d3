"""The current frame of a trajectory, tied to an x axis (time or frame index).

:class:`FrameLink` is the logic behind :class:`mlffkit.widgets.TrajectoryViewer`
with no widget in it: it maps frames to x values and back, turns a mouse click
on a plot into the nearest frame, and tells its observers when the frame
changes. The viewer connects the slider, the 3D view and the plot markers to it,
so every one of them follows whichever one the user moved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FrameObserver = Callable[[int], None]


class FrameLink:
    """The current frame of a trajectory and its place on a plot's x axis.

    Parameters
    ----------
    x : array_like, shape (n_frames,)
        The x value of each frame, strictly increasing: times in fs, or the
        frame indices ``0, 1, ..., n_frames - 1``.

    Attributes
    ----------
    x : numpy.ndarray, shape (n_frames,)
        The x value of each frame (read-only).

    Examples
    --------
    >>> link = FrameLink([0.0, 0.5, 1.0, 1.5])     # times in fs
    >>> link.observe(lambda frame: print("now at", frame))
    >>> link.frame_at(1.1)
    2
    >>> link.frame = 3
    now at 3
    """

    def __init__(self, x):
        x = np.array(x, dtype=np.float64)
        if x.ndim != 1 or len(x) == 0:
            raise ValueError(f"x must be a 1-d array with one value per frame, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x (the time or index of each frame) contains NaN or inf values")
        if np.any(np.diff(x) <= 0):
            first = int(np.argmax(np.diff(x) <= 0))
            raise ValueError(
                f"x must increase from frame to frame, but frame {first + 1} has "
                f"x={x[first + 1]} after x={x[first]}; pass the times of a single run "
                "in order (for restarted runs, offset the times of the later parts)"
            )
        x.flags.writeable = False
        self.x = x
        self._frame = 0
        self._observers: list[FrameObserver] = []

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.x)

    @property
    def frame(self) -> int:
        """The current frame index; setting it notifies the observers if it changed."""
        return self._frame

    @frame.setter
    def frame(self, frame) -> None:
        frame = self.check_frame(frame)
        if frame == self._frame:
            return  # nothing moved: do not echo, which also ends update cycles
        self._frame = frame
        for callback in list(self._observers):
            callback(frame)

    def check_frame(self, frame) -> int:
        """Return ``frame`` as an int in ``0..n_frames-1``.

        Raises
        ------
        ValueError
            If ``frame`` is not a whole number or lies outside the trajectory.
        """
        if isinstance(frame, bool) or not float(frame).is_integer():
            raise ValueError(
                f"a frame is a whole number, got {frame!r}; to go to the frame nearest "
                "to a time use frame_at(x)"
            )
        frame = int(frame)
        if not 0 <= frame < self.n_frames:
            raise ValueError(
                f"frame {frame} is outside the trajectory; frames run from 0 to {self.n_frames - 1}"
            )
        return frame

    def x_at(self, frame) -> float:
        """The x value (time in fs or index) of ``frame``."""
        return float(self.x[self.check_frame(frame)])

    def frame_at(self, x: float) -> int:
        """The frame whose x value is nearest to ``x``; x beyond either end gives that end.

        On a tie (``x`` exactly halfway between two frames) the earlier frame wins.
        """
        x = float(x)
        if not np.isfinite(x):
            raise ValueError(f"x must be a finite number, got {x}")
        right = int(np.searchsorted(self.x, x))  # first frame with x_frame >= x
        if right == 0:
            return 0
        if right == self.n_frames:
            return self.n_frames - 1
        left = right - 1
        return left if x - self.x[left] <= self.x[right] - x else right

    def observe(self, callback: FrameObserver) -> None:
        """Call ``callback(frame)`` each time the frame changes."""
        self._observers.append(callback)

    def unobserve(self, callback: FrameObserver) -> None:
        """Stop calling ``callback``."""
        self._observers.remove(callback)

    def handle_click(self, event) -> bool:
        """Move to the frame nearest to a mouse click on a plot.

        Parameters
        ----------
        event : matplotlib.backend_bases.MouseEvent or alike
            Needs ``xdata`` (None outside the axes) and ``button``; a click is
            ignored while the figure's toolbar is in pan or zoom mode, so that
            zooming into the plot does not also jump through the trajectory.

        Returns
        -------
        bool
            True if the click was taken (whether or not the frame changed).
        """
        if event.xdata is None or event.button != 1:  # outside the axes, or not a left click
            return False
        toolbar = getattr(getattr(event, "canvas", None), "toolbar", None)
        if toolbar is not None and toolbar.mode != "":  # pan/zoom in progress
            return False
        self.frame = self.frame_at(event.xdata)
        return True
