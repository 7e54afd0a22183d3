"""Checks of training labels that catch the usual data mistakes before they cost a week.

After a force-field model is trained on forces, its energies (integrated forces)
must line up with the reference energies: slope about 1 and strong correlation.
A negative slope means the "forces" were gradients (sign flipped); a slope far
from 1 means energies and forces are in different units; weak correlation means
energies and forces do not belong together.
"""

from __future__ import annotations

import warnings

import numpy as np

#: A slope outside (1/x, x) is reported as a unit mismatch. Real unit confusions are
#: factors of 1.9 (Bohr/Å) or more (kJ/kcal 4.2, eV/kcal/mol 23); small training sets and
#: a poorly chosen sigma scatter the slope by up to ~20 % without any label error.
UNIT_TOLERANCE = 1.33


class LabelWarning(UserWarning):
    """Training labels look inconsistent (forces vs. energies)."""


def check_energy_force_consistency(
    reference: np.ndarray, integrated: np.ndarray, stacklevel: int = 3
) -> dict:
    """Compare reference energies with the energies a force-trained model integrates.

    Parameters
    ----------
    reference : numpy.ndarray, shape (n,)
        Reference energies of the training frames, eV.
    integrated : numpy.ndarray, shape (n,)
        The model's energies for them (without the integration constant), eV.
    stacklevel : int
        Of the warnings (3: the caller of the function that calls this one).

    Returns
    -------
    dict
        ``energy_force_slope`` (least-squares slope of reference on integrated
        energies; 1 for consistent labels) and ``energy_force_correlation``
        (Pearson's r). NaN when the energies do not vary.

    Warns
    -----
    LabelWarning
        For an absolute correlation below 0.95 (energies and forces do not match);
        otherwise for a negative slope (forces with a flipped sign, i.e. gradients) or
        a slope outside (0.75, 1.33) (units of energies and forces differ).
    """
    ref = np.asarray(reference, dtype=np.float64)
    pred = np.asarray(integrated, dtype=np.float64)
    if len(ref) < 3 or np.std(ref) == 0 or np.std(pred) == 0:
        return {"energy_force_slope": float("nan"), "energy_force_correlation": float("nan")}
    slope = float(np.polyfit(pred, ref, 1)[0])
    corr = float(np.corrcoef(ref, pred)[0, 1])
    if abs(corr) < 0.95:
        # A slope fitted to weakly correlated points means nothing: report the correlation only.
        warnings.warn(
            f"the reference energies correlate only weakly (r = {corr:.2f}) with the energies "
            "integrated from the forces: check that energies and forces belong to the same "
            "frames and level of theory, and look for duplicated or corrupt frames (with few "
            "training frames or a poor sigma this can also be chance)",
            LabelWarning,
            stacklevel=stacklevel,
        )
    elif slope < 0:
        warnings.warn(
            "the energies integrated from the force labels run opposite to the reference "
            f"energies (slope {slope:.2f}): the 'forces' are probably energy gradients. Check "
            "their sign (forces = -dE/dr)",
            LabelWarning,
            stacklevel=stacklevel,
        )
    elif not 1 / UNIT_TOLERANCE < slope < UNIT_TOLERANCE:
        warnings.warn(
            f"the energies integrated from the forces differ from the reference energies by a "
            f"factor of about {slope:.2f}: energies and forces may be in different units "
            "(e.g. kcal/mol vs eV, Bohr vs Å); check the units passed to mlffkit.data.load",
            LabelWarning,
            stacklevel=stacklevel,
        )
    return {"energy_force_slope": slope, "energy_force_correlation": corr}


NO_DIAGNOSTICS = {"energy_force_slope": float("nan"), "energy_force_correlation": float("nan")}


def fit_integration_constant(energies, integrated_fn) -> tuple[float, dict]:
    """The energy offset of a force-trained model, and its label diagnostics.

    Parameters
    ----------
    energies : numpy.ndarray, shape (n,), or None
        Reference energies of the training frames, eV (None: none available).
    integrated_fn : callable
        ``() -> (n,)`` the model's integrated energies of the training frames, eV; called
        only when there are reference energies.

    Returns
    -------
    constant : float
        ``mean(energies - integrated)``, eV; 0 without energies.
    diagnostics : dict
        From :func:`check_energy_force_consistency` (NaN entries without energies).

    Warns
    -----
    UserWarning
        Without energies: predicted energies are then defined only up to a constant.
    LabelWarning
        As :func:`check_energy_force_consistency`.
    """
    if energies is None:
        warnings.warn(
            "the training set has no energies: predicted energies are defined only up to "
            "a constant (differences are meaningful, absolute values are not)",
            stacklevel=3,
        )
        return 0.0, dict(NO_DIAGNOSTICS)
    integrated = integrated_fn()
    diagnostics = check_energy_force_consistency(energies, integrated, stacklevel=4)
    return float(np.mean(energies - integrated)), diagnostics
