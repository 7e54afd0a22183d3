"""How good is a model? Errors on held-out frames, in meV and kcal/mol, and their plots.

>>> report = evaluate(model, test)          # doctest: +SKIP
>>> print(report)                           # doctest: +SKIP
>>> plot_parity(report)                     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from mlffkit import units
from mlffkit.data.dataset import Dataset

_PANEL = (4.4, 3.9)  # inches, one panel


@dataclass
class ErrorReport:
    """Errors of a model's predictions on a dataset (stored in eV and eV/Å).

    Attributes
    ----------
    model_name, dataset_name : str
    n_frames, n_atoms : int
        Frames, and atoms per frame (the largest, when frames differ in size).
    energy_mae, energy_rmse : float or None
        eV; None when the dataset has no energies or the model knows energies
        only up to a constant (trained without them).
    force_mae, force_rmse : float
        Over all force components, eV/Å.
    energies_ref, energies_pred : numpy.ndarray, shape (n_frames,) or None
        eV.
    forces_ref, forces_pred : numpy.ndarray, shape (n_frames, n_atoms, 3)
        eV/Å; ``(total_atoms, 3)`` when the frames differ in size.
    """

    model_name: str
    dataset_name: str
    n_frames: int
    n_atoms: int
    energy_mae: float | None
    energy_rmse: float | None
    force_mae: float
    force_rmse: float
    energies_ref: np.ndarray | None
    energies_pred: np.ndarray | None
    forces_ref: np.ndarray
    forces_pred: np.ndarray

    def to_dict(self) -> dict:
        """All errors in meV (meV/Å) and kcal/mol (kcal/mol/Å), as plain floats (None if absent)."""
        out = {"model": self.model_name, "dataset": self.dataset_name, "n_frames": self.n_frames}
        for label, value, per in (
            ("energy_mae", self.energy_mae, ""),
            ("energy_rmse", self.energy_rmse, ""),
            ("force_mae", self.force_mae, "_A"),
            ("force_rmse", self.force_rmse, "_A"),
        ):
            out[f"{label}_meV{per}"] = None if value is None else float(value * 1e3)
            out[f"{label}_kcal_mol{per}"] = (
                None if value is None else float(value / units.KCAL_PER_MOL)
            )
        return out

    def __str__(self) -> str:
        d = self.to_dict()

        def cell(mev, kcal, per):
            return f"{mev:10.2f} {'meV' + per:5s} {kcal:8.3f} {'kcal/mol' + per:10s}"

        width = len(cell(0.0, 0.0, ""))
        lines = [
            f"{self.model_name} on {self.dataset_name or '(unnamed)'}: {self.n_frames} frames",
            f"{'':7s}{'MAE':^{width}s} {'RMSE':^{width}s}",
        ]
        if d["energy_mae_meV"] is not None:
            lines.append(
                f"{'energy':7s}{cell(d['energy_mae_meV'], d['energy_mae_kcal_mol'], '')} "
                f"{cell(d['energy_rmse_meV'], d['energy_rmse_kcal_mol'], '')}"
            )
        else:
            lines.append(f"{'energy':7s}{'n/a (no reference energies)':^{width}s}")
        lines.append(
            f"{'forces':7s}{cell(d['force_mae_meV_A'], d['force_mae_kcal_mol_A'], '/Å')} "
            f"{cell(d['force_rmse_meV_A'], d['force_rmse_kcal_mol_A'], '/Å')}"
        )
        return "\n".join(line.rstrip() for line in lines)


def evaluate(
    model, dataset: Dataset, *, allow_training_frames: bool = False, progress: bool = False
) -> ErrorReport:
    """Energy and force errors of ``model`` on ``dataset``.

    Parameters
    ----------
    model : ForceFieldModel
        A fitted model.
    dataset : Dataset
        Frames with reference forces (and energies).
    allow_training_frames : bool
        By default frames the model was trained on are refused (a test error on
        them means nothing); set True to measure the training error on purpose.
    progress : bool
        Progress bar for the predictions.

    Returns
    -------
    ErrorReport

    Raises
    ------
    ValueError
        If the dataset has no forces, or shares frames with the training set.
    """
    dataset.require("forces")
    if not allow_training_frames:
        model.check_not_trained_on(dataset)
    e_pred, f_pred = model.predict(dataset, progress=progress)
    if isinstance(f_pred, list):  # frames of different sizes (neural models): compare atom-wise
        f_pred = np.concatenate(f_pred)
        f_ref = dataset.flat_forces
    else:
        f_ref = dataset.forces
    f_err = f_pred - f_ref
    has_e = dataset.energies is not None and getattr(model, "has_energy_reference_", True)
    e_err = e_pred - dataset.energies if has_e else None
    return ErrorReport(
        model_name=model.display_name() if hasattr(model, "display_name") else type(model).__name__,
        dataset_name=dataset.name,
        n_frames=len(dataset),
        n_atoms=int(dataset.n_atoms.max()),
        energy_mae=float(np.mean(np.abs(e_err))) if has_e else None,
        energy_rmse=float(np.sqrt(np.mean(e_err**2))) if has_e else None,
        force_mae=float(np.mean(np.abs(f_err))),
        force_rmse=float(np.sqrt(np.mean(f_err**2))),
        energies_ref=dataset.energies.copy() if has_e else None,
        energies_pred=e_pred if has_e else None,
        forces_ref=f_ref.copy(),
        forces_pred=f_pred,
    )


def _unit(unit: str) -> tuple[float, str]:
    return units.energy_factor(unit), units.canonical_energy_unit(unit)


def _axes(axes, n: int):
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(_PANEL[0] * n, _PANEL[1]), layout="constrained")
    axes = np.atleast_1d(axes)
    if len(axes) != n:
        raise ValueError(f"pass {n} axes (energies, forces), got {len(axes)}")
    return axes


def plot_parity(report: ErrorReport, axes=None, unit: str = "kcal/mol"):
    """Predicted against reference energies and force components, with the MAE in each panel.

    Parameters
    ----------
    report : ErrorReport
        From :func:`evaluate`.
    axes : sequence of two matplotlib Axes, optional
        Energies, forces; default a new figure. Without energies the energy panel says so.
    unit : str
        Energy unit shown (``"kcal/mol"``, ``"meV"``, ``"eV"``); forces in that unit per Å.
        Energies are shown relative to the mean reference energy.

    Returns
    -------
    matplotlib.figure.Figure
    """
    factor, name = _unit(unit)
    ax_e, ax_f = _axes(axes, 2)
    if report.energies_ref is not None:
        shift = report.energies_ref.mean()
        ref = (report.energies_ref - shift) / factor
        pred = (report.energies_pred - shift) / factor
        _parity_panel(ax_e, ref, pred, f"energy − mean ({name})", report.energy_mae / factor, name)
    else:
        ax_e.text(
            0.5, 0.5, "no reference energies", ha="center", va="center", transform=ax_e.transAxes
        )
        ax_e.set_axis_off()
    _parity_panel(
        ax_f,
        report.forces_ref.ravel() / factor,
        report.forces_pred.ravel() / factor,
        f"force component ({name}/Å)",
        report.force_mae / factor,
        f"{name}/Å",
    )
    ax_f.figure.suptitle(
        f"{report.model_name} on {report.dataset_name or 'test set'} ({report.n_frames} frames)"
    )
    return ax_f.figure


def _parity_panel(ax, ref, pred, label: str, mae: float, unit: str) -> None:
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, zorder=0)
    ax.scatter(ref, pred, s=4, alpha=0.4, linewidths=0)
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.text(0.04, 0.96, f"MAE {mae:.3g} {unit}", transform=ax.transAxes, va="top")


def plot_error_distribution(report: ErrorReport, axes=None, unit: str = "kcal/mol", bins: int = 60):
    """Histograms of the energy errors and the force-component errors.

    Parameters
    ----------
    report : ErrorReport
    axes : sequence of two matplotlib Axes, optional
    unit : str
        Energy unit shown; forces in that unit per Å.
    bins : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    factor, name = _unit(unit)
    ax_e, ax_f = _axes(axes, 2)
    if report.energies_ref is not None:
        ax_e.hist((report.energies_pred - report.energies_ref) / factor, bins=bins)
        ax_e.set_xlabel(f"energy error ({name})")
        ax_e.set_ylabel("frames")
    else:
        ax_e.text(
            0.5, 0.5, "no reference energies", ha="center", va="center", transform=ax_e.transAxes
        )
        ax_e.set_axis_off()
    ax_f.hist(((report.forces_pred - report.forces_ref) / factor).ravel(), bins=bins)
    ax_f.set_xlabel(f"force component error ({name}/Å)")
    ax_f.set_ylabel("components")
    ax_f.set_yscale("log")
    ax_f.figure.suptitle(f"{report.model_name} errors on {report.dataset_name or 'test set'}")
    return ax_f.figure
