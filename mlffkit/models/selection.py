"""Choosing the kernel length scale on validation data."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from tqdm.auto import tqdm

from mlffkit import units
from mlffkit.data.splits import check_disjoint
from mlffkit.models.base import as_dataset
from mlffkit.models.diagnostics import LabelWarning

CRITERIA = ("forces", "energies")


@dataclass
class SigmaCurve:
    """Validation errors against the kernel length scale.

    Attributes
    ----------
    sigmas : numpy.ndarray, shape (n,)
        The length scales tried (descriptor units).
    force_mae : numpy.ndarray, shape (n,)
        Mean absolute force-component error on the validation set, eV/Å (NaN where
        training failed).
    energy_mae : numpy.ndarray, shape (n,)
        Mean absolute energy error, eV (NaN without validation energies).
    best_sigma : float
        The length scale with the lowest error by ``criterion``.
    criterion : str
        ``"forces"`` or ``"energies"``.
    """

    sigmas: np.ndarray
    force_mae: np.ndarray
    energy_mae: np.ndarray
    best_sigma: float
    criterion: str

    def plot(self, ax=None, unit: str = "meV"):
        """Plot both validation MAEs against sigma (log-scaled), best sigma marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on; default a new figure.
        unit : str
            Energy unit of the errors (``"meV"``, ``"kcal/mol"``, ``"eV"``); forces
            are shown in that unit per Å.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        factor = units.energy_factor(unit)
        name = units.canonical_energy_unit(unit)
        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
        ax.plot(self.sigmas, self.force_mae / factor, "o-", label=f"force MAE ({name}/Å)")
        if np.any(np.isfinite(self.energy_mae)):
            ax.plot(self.sigmas, self.energy_mae / factor, "s--", label=f"energy MAE ({name})")
        ax.axvline(
            self.best_sigma, color="0.5", lw=1, ls=":", label=f"best σ = {self.best_sigma:g}"
        )
        ax.set_xscale("log")
        # label the σ values tried, not log minor ticks (which crowd on a short range)
        ax.set_xticks(self.sigmas, [f"{s:g}" for s in self.sigmas])
        ax.minorticks_off()
        ax.set_xlabel("kernel length scale σ (descriptor units)")
        ax.set_ylabel(f"validation MAE ({name}, {name}/Å)")
        ax.legend(frameon=False)
        return ax.figure


def select_sigma(
    train, valid, sigmas, *, model=None, criterion: str = "forces", progress: bool = True
):
    """Train one model per length scale and keep the one with the lowest validation error.

    Parameters
    ----------
    train, valid : Dataset
        Disjoint training and validation frames (a validation frame that is also
        a training frame would flatter small sigmas).
    sigmas : sequence of float
        Length scales to try, in descriptor units.
    model : ForceFieldModel, optional
        Template whose other parameters are kept (cloned, then ``sigma`` set);
        default :class:`~mlffkit.models.GDML` with its defaults.
    criterion : {"forces", "energies"}
        Which validation MAE to minimise.
    progress : bool
        Show a progress bar over the sigmas.

    Returns
    -------
    best : ForceFieldModel
        The model trained with the best sigma (fitted; no need to retrain).
    curve : SigmaCurve
        All validation errors; ``curve.plot()`` draws them.

    Raises
    ------
    ValueError
        If train and valid share frames, ``sigmas`` is empty, or no sigma could be trained.
    """
    from mlffkit.models.gdml import GDML

    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    sigmas = np.asarray(sigmas, dtype=np.float64).ravel()
    if sigmas.size == 0:
        raise ValueError("sigmas is empty; pass the length scales to try, e.g. [5, 10, 20, 40]")
    train = as_dataset(train)
    valid = as_dataset(valid, "validation data").require("forces")
    check_disjoint(train, valid)
    if criterion == "energies":
        valid.require("energies")
    template = model if model is not None else GDML(sigma=float(sigmas[0]))

    force_mae = np.full(sigmas.size, np.nan)
    energy_mae = np.full(sigmas.size, np.nan)
    best, best_err, best_label_warnings = None, np.inf, []
    for k, sigma in enumerate(tqdm(sigmas, desc="sigma", disable=not progress)):
        candidate = clone(template).set_params(sigma=float(sigma))
        # The label check judges the labels through the fitted model, and a poor sigma makes
        # it cry wolf: hold its warnings back and report only those of the chosen model.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LabelWarning)
            try:
                candidate.fit(train, progress=False)
                failure = None
            except RuntimeError as err:  # kernel not positive definite at this sigma
                failure = err
        label_warnings = [w for w in caught if issubclass(w.category, LabelWarning)]
        for w in caught:
            if not issubclass(w.category, LabelWarning):
                warnings.warn(w.message, w.category, stacklevel=2)
        if failure is not None:
            warnings.warn(f"sigma={sigma:g} skipped: {failure}", stacklevel=2)
            continue
        e, f = candidate.predict(valid)
        force_mae[k] = np.mean(np.abs(f - valid.forces))
        if valid.energies is not None and candidate.has_energy_reference_:
            energy_mae[k] = np.mean(np.abs(e - valid.energies))
        err = force_mae[k] if criterion == "forces" else energy_mae[k]
        if err < best_err:
            best, best_err, best_label_warnings = candidate, err, label_warnings
    if best is None:
        raise ValueError("no sigma could be trained; try larger lam or other sigmas")
    for w in best_label_warnings:
        warnings.warn(w.message, w.category, stacklevel=2)
    curve = SigmaCurve(sigmas, force_mae, energy_mae, float(best.sigma), criterion)
    return best, curve
