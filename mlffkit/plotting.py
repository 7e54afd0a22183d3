"""Plots of datasets and MD runs, with units on every axis.

Each function returns the :class:`matplotlib.figure.Figure` it drew on. Functions
that draw on one panel take ``ax=`` to draw into an existing figure; without it
they open a new pyplot figure, which notebooks show by themselves (in scripts,
``plt.close(fig)`` once saved). Energies come in eV and forces in eV/Å, as a
:class:`~mlffkit.data.Dataset` holds them; ``unit=`` picks the unit shown.

>>> from mlffkit.plotting import plot_dataset_overview, save_figure
>>> fig = plot_dataset_overview(ds, unit="kcal/mol")        # doctest: +SKIP
>>> save_figure(fig, "overview.png")                         # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from ase.data import chemical_symbols
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mlffkit import units
from mlffkit.data import Dataset
from mlffkit.fileio import atomic_path

_PANEL = (4.5, 3.2)  # inches, one panel


def _unit(unit) -> tuple[float, str]:
    """(eV per unit, display name) of an energy unit."""
    return units.energy_factor(unit), units.canonical_energy_unit(unit)


def _new_axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=_PANEL, layout="constrained")
    return ax


def _title(dataset: Dataset) -> str:
    name = dataset.name or dataset.formula
    return f"{name} ({dataset.level_of_theory})" if dataset.level_of_theory else name


def relative_energies(dataset: Dataset) -> tuple[np.ndarray, bool]:
    """Energies minus the mean energy of the frames with the same composition.

    Parameters
    ----------
    dataset : Dataset
        With energies.

    Returns
    -------
    energies : numpy.ndarray, shape (n_frames,)
        Relative energies in eV.
    per_composition : bool
        True if the dataset mixes compositions, so that each frame is relative
        to the mean of its own composition (absolute energies of different
        molecules differ by far more than any conformational spread).
    """
    dataset.require("energies")
    elements, z_index = np.unique(dataset.flat_numbers, return_inverse=True)
    # composition of each frame: how many atoms of each element it holds
    counts = np.zeros((len(dataset), len(elements)), dtype=np.int64)
    np.add.at(counts, (dataset.frame_index, z_index), 1)
    _, group = np.unique(counts, axis=0, return_inverse=True)
    group = group.ravel()
    means = np.bincount(group, weights=dataset.energies) / np.bincount(group)
    return dataset.energies - means[group], bool(group.max() > 0)


def plot_energy_distribution(
    dataset: Dataset, ax: Axes | None = None, unit: str = "eV", bins="auto"
) -> Figure:
    """Histogram of the energies relative to their mean.

    Parameters
    ----------
    dataset : Dataset
        With energies (eV). Frames of different compositions are each taken
        relative to the mean of their own composition.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    unit : str, default "eV"
        Energy unit of the x axis ("eV", "meV", "kcal/mol", "kJ/mol", ...).
    bins : int or str, default "auto"
        Passed to :func:`numpy.histogram_bin_edges`.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If the dataset has no energies or the unit is unknown.
    """
    factor, name = _unit(unit)
    rel, per_composition = relative_energies(dataset)
    ax = _new_axes(ax)
    ax.hist(rel / factor, bins=bins, color="C0")
    mean = "⟨E⟩ per composition" if per_composition else "⟨E⟩"
    ax.set_xlabel(f"E − {mean} / {name}")
    ax.set_ylabel("frames")
    ax.set_title(_title(dataset), fontsize="medium")
    return ax.figure


def plot_force_distribution(dataset: Dataset, axes=None, unit: str = "eV", bins=60) -> Figure:
    """Histograms of the force components and of the force magnitude per element.

    Parameters
    ----------
    dataset : Dataset
        With forces (eV/Å).
    axes : pair of matplotlib.axes.Axes, optional
        Where to draw the components and the magnitudes; a new figure by default.
    unit : str, default "eV"
        Energy unit: forces are shown in ``unit``/Å.
    bins : int or str, default 60
        Passed to :func:`numpy.histogram_bin_edges`; the magnitudes of all
        elements share the same bins so that their histograms compare.

    Returns
    -------
    matplotlib.figure.Figure
        Left: all Cartesian components ``F_x, F_y, F_z`` of all atoms. Right:
        ``|F|`` of each atom, one step histogram per element.

    Raises
    ------
    ValueError
        If the dataset has no forces, ``axes`` is not two Axes, or the unit is unknown.
    """
    factor, name = _unit(unit)
    dataset.require("forces")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(2 * _PANEL[0], _PANEL[1]), layout="constrained")
    axes = list(np.ravel(axes))
    if len(axes) != 2:
        raise ValueError(f"axes must be two Axes (components, magnitudes), got {len(axes)}")
    forces = dataset.flat_forces / factor
    force_unit = f"{name}/Å"

    ax_comp, ax_norm = axes
    ax_comp.hist(forces.ravel(), bins=bins, color="C0")
    ax_comp.set_xlabel(f"force component F_x, F_y, F_z / ({force_unit})")
    ax_comp.set_ylabel("components")
    ax_comp.set_title(_title(dataset), fontsize="medium")

    norms = np.linalg.norm(forces, axis=1)
    edges = np.histogram_bin_edges(norms, bins=bins)
    for z in np.unique(dataset.flat_numbers):
        counts, _ = np.histogram(norms[dataset.flat_numbers == z], bins=edges)
        ax_norm.stairs(counts, edges, label=chemical_symbols[z], lw=1.5)
    ax_norm.set_xlabel(f"|F| per atom / ({force_unit})")
    ax_norm.set_ylabel("atoms")
    ax_norm.legend(title="element", fontsize="small")
    return ax_comp.figure


def plot_dataset_overview(dataset: Dataset, unit: str = "eV") -> Figure:
    """Energies along the dataset, their distribution and the force distributions.

    Parameters
    ----------
    dataset : Dataset
        With energies, forces or both; the panels of what is missing are left out.
    unit : str, default "eV"
        Energy unit (forces in ``unit``/Å).

    Returns
    -------
    matplotlib.figure.Figure
        Up to four panels: energy vs frame index and its histogram (top),
        force components and ``|F|`` per element (bottom).

    Raises
    ------
    ValueError
        If the dataset has neither energies nor forces.
    """
    factor, name = _unit(unit)
    rows = int(dataset.has_energies) + int(dataset.has_forces)
    if rows == 0:
        raise ValueError(
            f"dataset {dataset.name or '(unnamed)'} has neither energies nor forces to plot; "
            "label its frames with a calculator first"
        )
    fig = plt.figure(figsize=(2 * _PANEL[0], rows * _PANEL[1]), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    if dataset.has_energies:
        rel, per_composition = relative_energies(dataset)
        mean = "⟨E⟩ per composition" if per_composition else "⟨E⟩"
        axes[0, 0].plot(np.arange(len(dataset)), rel / factor, lw=0.8)
        axes[0, 0].set_xlabel("frame")
        axes[0, 0].set_ylabel(f"E − {mean} / {name}")
        plot_energy_distribution(dataset, ax=axes[0, 1], unit=unit)
    if dataset.has_forces:
        plot_force_distribution(dataset, axes=axes[-1], unit=unit)
    for ax in axes.ravel():
        ax.set_title("")
    what = f"{len(dataset)} frames" + (f" of {dataset.formula}" if dataset.is_uniform else "")
    fig.suptitle(f"{_title(dataset)}: {what}")
    return fig


def _series(values, what: str, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(
            f"{what} has shape {arr.shape}; expected ({n},), one value per time in time_fs"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{what} has NaN or inf values (first at index {int(np.argmin(np.isfinite(arr)))}); "
            "a simulation that blew up: check the time step and the starting structure"
        )
    return arr


def plot_md_energies(
    time_fs, epot, ekin=None, etot=None, temperature=None, unit: str = "eV"
) -> Figure:
    """Energies and temperature of an MD run against time.

    Parameters
    ----------
    time_fs : array_like, shape (n,)
        Times in fs.
    epot : array_like, shape (n,)
        Potential energy in eV.
    ekin : array_like, shape (n,), optional
        Kinetic energy in eV.
    etot : array_like, shape (n,), optional
        Total energy in eV; by default ``epot + ekin`` when ``ekin`` is given.
    temperature : array_like, shape (n,), optional
        Temperature in K, drawn in a second panel below.
    unit : str, default "eV"
        Energy unit of the plot.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    ``E_pot`` and ``E_tot`` are shifted by the same constant, ``E_pot`` at the
    first time, and ``E_kin`` is not, so the curves still add up:
    ``E_tot = E_pot + E_kin`` on the plot. In an NVE run ``E_tot`` should be
    flat; a drift means the time step is too long or the forces are not the
    gradient of the energy.
    """
    factor, name = _unit(unit)
    time_fs = np.asarray(time_fs, dtype=np.float64)
    if time_fs.ndim != 1 or len(time_fs) == 0:
        raise ValueError(f"time_fs must be a 1-d array of times in fs, got shape {time_fs.shape}")
    n = len(time_fs)
    epot = _series(epot, "epot", n)
    ekin = None if ekin is None else _series(ekin, "ekin", n)
    if etot is None and ekin is not None:
        etot = epot + ekin
    etot = None if etot is None else _series(etot, "etot", n)
    temperature = None if temperature is None else _series(temperature, "temperature", n)

    rows = 1 if temperature is None else 2
    fig = plt.figure(figsize=(6.0, 2.6 + 1.8 * (rows - 1)), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    ref = epot[0]
    ax = axes[0]
    ax.plot(time_fs, (epot - ref) / factor, label="E_pot − E_pot(0)", color="C0")
    if ekin is not None:
        ax.plot(time_fs, ekin / factor, label="E_kin", color="C1")
    if etot is not None:
        ax.plot(time_fs, (etot - ref) / factor, label="E_tot − E_pot(0)", color="k")
    ax.set_ylabel(f"energy / {name}")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if temperature is not None:
        axes[1].plot(time_fs, temperature, color="C3")
        axes[1].set_ylabel("T / K")
    axes[-1].set_xlabel("time / fs")
    return fig


def save_figure(fig: Figure, path, overwrite: bool = False, dpi: int = 150) -> Path:
    """Save a figure atomically; the file name's suffix picks the format.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
        Ends in a format matplotlib writes: ``.png``, ``.pdf``, ``.svg``, ...
    overwrite : bool, default False
        Replace an existing file.
    dpi : int, default 150
        Resolution of raster formats.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If the suffix is not an image format matplotlib writes.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"cannot tell an image format from the name {path.name!r}; end it with one of "
            f"{', '.join('.' + s for s in sorted(supported))}"
        )
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
