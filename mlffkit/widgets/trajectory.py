"""A trajectory in a 3D view, linked both ways to plots of per-frame quantities.

:class:`TrajectoryViewer` puts an nglview 3D view, a play button with a frame
slider and interactive matplotlib plots (ipympl) side by side. Moving the slider,
playing, or using nglview's own player moves a marker line in the plots;
clicking in a plot jumps to the nearest frame. The logic lives in
:class:`mlffkit.widgets.linking.FrameLink`; this module only wires widgets to it.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping

import ipywidgets as widgets
import matplotlib
import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from matplotlib.figure import Figure

from mlffkit.data import Dataset
from mlffkit.widgets.linking import FrameLink

#: Label of the potential-energy series plotted by default (relative to the first frame).
EPOT_LABEL = "E_pot − E_pot(0) / eV"
#: Label of the temperature series plotted by default.
TEMPERATURE_LABEL = "T / K"


def _ipympl_classes():
    """Import ipympl's Canvas and FigureManager without switching the pyplot backend.

    Importing ``ipympl`` runs ``matplotlib.use("module://ipympl.backend_nbagg")``
    when matplotlib is already imported. A viewer must not turn the user's inline
    plots into widgets (nor a test's Agg backend into ipympl), so the backend is
    put back the way it was.
    """
    # rcParams._get/_set read and write the setting without resolving an unset
    # ("auto") backend, which matplotlib.use() cannot restore
    before = matplotlib.rcParams._get("backend")
    from ipympl.backend_nbagg import Canvas, FigureManager

    if matplotlib.rcParams._get("backend") != before:
        if "matplotlib.pyplot" in sys.modules:
            matplotlib.use(before)  # also switches pyplot back
        else:
            matplotlib.rcParams._set("backend", before)
    return Canvas, FigureManager


def _read_frames(trajectory) -> list[Atoms]:
    """Frames of ``trajectory`` (Atoms list, file path, Dataset or single Atoms)."""
    if isinstance(trajectory, Dataset):
        frames = trajectory.to_atoms()
    elif isinstance(trajectory, str | os.PathLike):
        import ase.io

        if not os.path.exists(trajectory):
            raise FileNotFoundError(
                f"trajectory file {os.fspath(trajectory)!r} not found; check the path "
                "(any file ase.io.read understands works: .traj, .xyz, .extxyz, ...)"
            )
        frames = ase.io.read(trajectory, index=":")
    elif isinstance(trajectory, Atoms):
        frames = [trajectory]
    else:
        try:
            frames = list(trajectory)
        except TypeError:
            raise ValueError(
                f"cannot show a {type(trajectory).__name__}; pass a list of ase.Atoms, "
                "a trajectory file path or a mlffkit Dataset"
            ) from None
    if len(frames) == 0:
        raise ValueError("the trajectory has no frames; pass at least one structure")
    for i, atoms in enumerate(frames):
        if not isinstance(atoms, Atoms):
            raise ValueError(
                f"frame {i} is a {type(atoms).__name__}, not an ase.Atoms; pass a list of "
                "ase.Atoms, a trajectory file path or a mlffkit Dataset"
            )
        if not np.array_equal(atoms.numbers, frames[0].numbers):
            raise ValueError(
                f"frame {i} has other atoms ({atoms.get_chemical_formula()}) than frame 0 "
                f"({frames[0].get_chemical_formula()}); the viewer animates one set of atoms, "
                "so show frames of different systems in separate viewers"
            )
    return frames


def _is_md_result(obj) -> bool:
    """True for a :class:`mlffkit.md.MDResult` (or anything with its recorded arrays)."""
    return all(hasattr(obj, a) for a in ("frames", "time_fs", "potential_energy", "temperature"))


def _stored_energy(atoms: Atoms) -> float | None:
    """The potential energy the frame's calculator holds for these positions, else None.

    Never starts a calculation, and ignores results a calculator shared by
    several frames computed for other positions.
    """
    if atoms.calc is None:
        return None
    try:
        return atoms.calc.get_property("energy", atoms, allow_calculation=False)
    except PropertyNotImplementedError:
        return None


def _default_series(frames: list[Atoms]) -> dict[str, np.ndarray]:
    """Potential energy (if every frame has one) and temperature (if frames carry momenta)."""
    series = {}
    energies = [_stored_energy(atoms) for atoms in frames]
    if all(e is not None for e in energies):
        epot = np.array(energies, dtype=np.float64)
        series[EPOT_LABEL] = epot - epot[0]
    if any(atoms.has("momenta") for atoms in frames):
        series[TEMPERATURE_LABEL] = np.array([atoms.get_temperature() for atoms in frames])
    return series


def _time_axis(time_fs, n_frames: int) -> tuple[np.ndarray, str]:
    """x values and x-axis label: times in fs, or frame indices when ``time_fs`` is None."""
    if time_fs is None:
        return np.arange(n_frames, dtype=np.float64), "frame"
    t = np.asarray(time_fs, dtype=np.float64)
    if t.ndim == 0:
        if not (np.isfinite(t) and t > 0):
            raise ValueError(
                f"time_fs={float(t)} as a scalar is the time between frames and must be > 0"
            )
        return np.arange(n_frames) * float(t), "time / fs"
    if t.shape != (n_frames,):
        raise ValueError(
            f"time_fs has shape {t.shape} but the trajectory has {n_frames} frames; pass one "
            "time per frame in fs, or a scalar: the time between frames"
        )
    return t, "time / fs"


def _check_series(series: Mapping, n_frames: int) -> dict[str, np.ndarray]:
    checked = {}
    for name, values in series.items():
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"series {name!r} must hold numbers, one per frame") from None
        if arr.shape != (n_frames,):
            raise ValueError(
                f"series {name!r} has shape {arr.shape} but the trajectory has {n_frames} "
                "frames; pass one value per frame"
            )
        checked[str(name)] = arr
    return checked


class TrajectoryViewer:
    """A trajectory in nglview, linked both ways to plots of per-frame quantities.

    Parameters
    ----------
    trajectory : list of ase.Atoms, str or path-like, Dataset or MDResult
        The frames: a list of Atoms, any trajectory file :func:`ase.io.read`
        understands (``.traj``, ``.xyz``, ...), a :class:`mlffkit.data.Dataset`,
        or the :class:`mlffkit.md.MDResult` of ``run_md`` (its times, potential
        energies and temperatures are then the defaults of ``time_fs`` and
        ``series``). All frames must hold the same atoms in the same order.
    series : dict of str to array_like, optional
        Quantities to plot, one value per frame, as ``{label: values}``; put the
        unit in the label, e.g. ``{"E_pot / eV": epot, "T / K": temperature}``.
        Several series are stacked in subplots that share the x axis. By default
        the potential energy relative to frame 0 (when the frames carry energies,
        e.g. from a SinglePointCalculator) and the temperature (when they carry
        momenta, as MD trajectory files do). Pass ``{}`` for no plot.
    time_fs : array_like of shape (n_frames,) or float, optional
        Time of each frame in fs, or the time between frames. Without it the
        x axis is the frame index.
    show_structure : bool, default True
        Show the nglview 3D view. Without it the viewer is plots and a slider.
    interval_ms : int, default 100
        Time between frames when playing, in ms.
    figsize : tuple of float, optional
        Size of the plot figure in inches; by default 5.5 wide and 1.9 per series.

    Attributes
    ----------
    frames : list of ase.Atoms
        The frames shown.
    series : dict of str to numpy.ndarray
        The plotted quantities, ``(n_frames,)`` each.
    link : FrameLink
        The current frame and its x value; the widgets below all follow it.
    view : nglview.NGLWidget or None
        The 3D view (None with ``show_structure=False``).
    figure : matplotlib.figure.Figure or None
        The plots, drawn on an ipympl canvas (None without series).
    markers : list of matplotlib.lines.Line2D
        The vertical line marking the current frame in each subplot.
    play, slider : ipywidgets.Play, ipywidgets.IntSlider
        The player and the frame slider.
    readout : ipywidgets.Label
        The current frame, time and series values as text.
    widget : ipywidgets.VBox
        Everything above, ready to display.

    Notes
    -----
    The plots use ipympl, the interactive matplotlib backend of JupyterLab, so
    that a click in a plot reaches Python; a click while the plot toolbar is in
    pan or zoom mode only pans or zooms. The canvas is created without a
    frontend too (nbconvert, nbmake, tests), where it renders as a static image,
    and the viewer never waits for the browser. Building a viewer does not
    change the pyplot backend.

    Examples
    --------
    >>> from mlffkit.widgets import TrajectoryViewer
    >>> viewer = TrajectoryViewer("md.traj", time_fs=5.0)   # doctest: +SKIP
    >>> viewer                                               # doctest: +SKIP
    >>> viewer.frame = 40          # or click in the plot    # doctest: +SKIP
    """

    def __init__(
        self,
        trajectory,
        series: Mapping | None = None,
        *,
        time_fs=None,
        show_structure: bool = True,
        interval_ms: int = 100,
        figsize: tuple[float, float] | None = None,
    ):
        if _is_md_result(trajectory):
            self.frames = _read_frames(trajectory.frames)
            if time_fs is None:
                time_fs = trajectory.time_fs
            default_series = {
                EPOT_LABEL: trajectory.potential_energy - trajectory.potential_energy[0],
                TEMPERATURE_LABEL: trajectory.temperature,
            }
        else:
            self.frames = _read_frames(trajectory)
            default_series = _default_series(self.frames)
        n_frames = len(self.frames)
        x, self.x_label = _time_axis(time_fs, n_frames)
        self.series = _check_series(default_series if series is None else series, n_frames)
        self.link = FrameLink(x)
        self.time_fs = None if time_fs is None else self.link.x

        self.play = widgets.Play(value=0, min=0, max=n_frames - 1, interval=int(interval_ms))
        self.slider = widgets.IntSlider(
            value=0, min=0, max=n_frames - 1, description="frame", continuous_update=True
        )
        # Python-side links so that the kernel sees every change and tests can drive them
        widgets.link((self.play, "value"), (self.slider, "value"))
        self.slider.observe(self._on_slider, names="value")
        self.readout = widgets.Label()

        self.view = self._make_view() if show_structure else None
        self.figure, self.markers = None, []
        if self.series:
            self.figure, self.markers = self._make_figure(figsize)

        self.link.observe(self._follow)
        self._update_readout(self.link.frame)

        controls = widgets.HBox([self.play, self.slider, self.readout])
        panels = [] if self.view is None else [self.view]
        if self.figure is not None:
            panels.append(self.figure.canvas)
        top = widgets.HBox(
            panels, layout=widgets.Layout(flex_flow="row wrap", align_items="center")
        )
        self.widget = widgets.VBox([top, controls])

    # ---------------------------------------------------------------- public
    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.link.n_frames

    @property
    def frame(self) -> int:
        """The frame shown; setting it moves the view, the slider and the markers."""
        return self.link.frame

    @frame.setter
    def frame(self, frame: int) -> None:
        self.link.frame = frame

    def close(self) -> None:
        """Close the widgets (their frontend views disappear) and release the figure."""
        for w in (self.widget, *self.widget.children, self.play, self.slider, self.readout):
            w.close()
        if self.view is not None:
            self.view.close()
        if self.figure is not None:
            self.figure.canvas.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ---------------------------------------------------------------- wiring
    def _make_view(self):
        import nglview

        view = nglview.NGLWidget(nglview.ASETrajectory(self.frames), default=False)
        view.add_ball_and_stick()
        if self.frames[0].pbc.any():
            view.add_unitcell()
        view.layout = widgets.Layout(width="420px", height="360px")
        view.observe(self._on_view_frame, names="frame")
        return view

    def _make_figure(self, figsize):
        Canvas, FigureManager = _ipympl_classes()
        n = len(self.series)
        fig = Figure(figsize=figsize or (5.5, 0.6 + 1.9 * n), layout="constrained")
        canvas = Canvas(fig)
        with warnings.catch_warnings():
            # ipympl's Toolbar passes the canvas on to traitlets, which warns; not ours to fix
            warnings.filterwarnings("ignore", "Passing unrecognized arguments", DeprecationWarning)
            FigureManager(canvas, 0)  # ipympl routes frontend messages (resize, events) through it
        canvas.header_visible = False

        axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
        x0 = self.link.x_at(self.link.frame)
        markers = []
        for ax, (label, values) in zip(axes, self.series.items(), strict=True):
            ax.plot(self.link.x, values, lw=1.2)
            ax.set_ylabel(label)
            markers.append(ax.axvline(x0, color="C3", lw=1.0))
        axes[-1].set_xlabel(self.x_label)
        axes[0].set_title("click to go to a frame", fontsize="small", loc="right")
        canvas.mpl_connect("button_press_event", self.link.handle_click)
        return fig, markers

    def _on_slider(self, change) -> None:
        self.link.frame = change["new"]

    def _on_view_frame(self, change) -> None:
        self.link.frame = change["new"]

    def _follow(self, frame: int) -> None:
        """Move every widget to ``frame`` (called by the link when the frame changes)."""
        self.slider.value = frame
        if self.view is not None:
            self.view.frame = frame
        if self.markers:
            x = self.link.x_at(frame)
            for line in self.markers:
                line.set_xdata([x, x])
            self.figure.canvas.draw_idle()
        self._update_readout(frame)

    def _update_readout(self, frame: int) -> None:
        parts = [f"frame {frame}/{self.n_frames - 1}"]
        if self.time_fs is not None:
            parts.append(f"t = {self.link.x_at(frame):g} fs")
        parts += [f"{name}: {values[frame]:.4g}" for name, values in self.series.items()]
        self.readout.value = "   ".join(parts)
