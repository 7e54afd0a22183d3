"""Telling when an MD run has gone wrong: non-finite numbers, runaway temperature, broken bonds.

A machine-learned potential taken outside its training data can produce forces that
heat a molecule up until it explodes, or let an atom drift away. The
:class:`StabilityMonitor` checks the state of a run as it goes and reports the
first sign of such a failure as an :class:`InstabilityEvent`: when it happened
(step and time) and why (which number, which bond, what temperature).

>>> monitor = StabilityMonitor(temperature_factor=5.0, bond_stretch_factor=2.0)
>>> result = run_md(atoms, calc, steps=2000, monitor=monitor)   # doctest: +SKIP
>>> result.failure                                              # doctest: +SKIP
InstabilityEvent(step=812, time_fs=406.0, reason='bond_stretch', ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.stats import chi2

#: Reason codes of an :class:`InstabilityEvent`.
NON_FINITE = "non_finite"
TEMPERATURE = "temperature"
BOND_STRETCH = "bond_stretch"
CALCULATOR_FAILED = "calculator_failed"

# Two atoms are bonded when closer than this multiple of the sum of their covalent radii
# (ASE's natural_cutoffs): covalent radii alone miss stretched C-H bonds (0.76 + 0.31 < 1.09 Å).
_BOND_TOLERANCE = 1.2

# Probability, per check, that a healthy run's kinetic temperature fluctuates above the
# limit. The limit is raised above ``temperature_factor`` x the reference where a small
# system's thermal fluctuations would otherwise reach it (chi-squared statistics).
_FALSE_ALARM_PROBABILITY = 1e-9


@dataclass(frozen=True)
class InstabilityEvent:
    """The first sign that a run failed.

    Attributes
    ----------
    step : int
        MD step at which the failure was detected (0 is the starting structure).
    time_fs : float
        Simulation time of that step, fs.
    reason : str
        ``"non_finite"``, ``"temperature"``, ``"bond_stretch"`` or ``"calculator_failed"``.
    message : str
        One sentence saying what happened, with the numbers.
    details : dict
        The numbers behind the message, e.g. ``atoms``, ``symbols``, ``length_A``,
        ``initial_length_A``, ``ratio`` for a bond; ``temperature_K`` and ``limit_K``
        for a temperature runaway; ``quantity`` and ``atoms`` for non-finite values.
    """

    step: int
    time_fs: float
    reason: str
    message: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"step {self.step} ({self.time_fs:.1f} fs): {self.message}"


class InstabilityWarning(RuntimeWarning):
    """Warned when a run is stopped by its stability monitor."""


class InstabilityError(RuntimeError):
    """Raised instead of the warning when the monitor has ``raise_on_failure=True``.

    ``.result`` holds the :class:`~mlffkit.md.MDResult` up to the failure and
    ``.event`` the :class:`InstabilityEvent`.
    """

    def __init__(self, result):
        self.result = result
        self.event = result.failure
        super().__init__(f"MD run became unstable at {self.event}")


class StabilityMonitor:
    """Checks an MD run for the usual ways it blows up, and says when and why.

    Three checks, each at every ``check_every`` steps and at every recorded frame:

    * non-finite numbers: positions, momenta, potential energy or forces that are NaN or inf;
    * temperature runaway: the kinetic temperature (K) above ``max_temperature_K`` or,
      when that is not given, above ``temperature_factor`` times the reference
      temperature of the run (the thermostat target in NVT; in NVE the temperature the
      velocities were drawn at, or the starting kinetic temperature). For very small
      systems the limit is raised to where healthy thermal fluctuations reach it with a
      probability below 1e-9 per check, so that a diatomic does not raise false alarms;
    * bond stretch: a bond present at the start (a pair closer than 1.2 times the sum
      of their covalent radii, minimum-image distances in periodic cells) longer than
      ``bond_stretch_factor`` times its initial length. A vibrating bond stays well
      below 2x; a dissociated one does not.

    Parameters
    ----------
    max_temperature_K : float, optional
        Absolute temperature limit in K. Overrides ``temperature_factor``.
    temperature_factor : float or None, default 5.0
        Limit as a multiple of the run's reference temperature; None switches the
        temperature check off (unless ``max_temperature_K`` is given).
    bond_stretch_factor : float or None, default 2.0
        Limit on bond length / initial bond length; None switches the bond check off.
        Switch it off for runs in which bonds break legitimately (liquids, melting
        metals, reactions).
    check_every : int, default 1
        Check every n steps. Checks are cheap next to a force call; larger values only
        report a failure later.
    raise_on_failure : bool, default False
        Raise :class:`InstabilityError` when the run fails, instead of warning with
        :class:`InstabilityWarning` and returning the result.

    Attributes
    ----------
    bonds_ : ndarray of int, shape (n_bonds, 2)
        Atom pairs bonded at the start of the current run (set by :meth:`start`).
    initial_lengths_ : ndarray, shape (n_bonds,)
        Their lengths at the start, Å.
    temperature_limit_K_ : float or None
        The temperature limit in force for the current run.
    """

    def __init__(
        self,
        max_temperature_K: float | None = None,
        temperature_factor: float | None = 5.0,
        bond_stretch_factor: float | None = 2.0,
        check_every: int = 1,
        raise_on_failure: bool = False,
    ):
        if max_temperature_K is not None and not max_temperature_K > 0:
            raise ValueError(
                f"max_temperature_K must be a positive temperature in K, got {max_temperature_K}"
            )
        if temperature_factor is not None and not temperature_factor > 1:
            raise ValueError(
                f"temperature_factor must be above 1 (a multiple of the run's temperature), "
                f"got {temperature_factor}; use None to switch the temperature check off"
            )
        if bond_stretch_factor is not None and not bond_stretch_factor > 1:
            raise ValueError(
                f"bond_stretch_factor must be above 1 (a multiple of the initial bond length), "
                f"got {bond_stretch_factor}; use None to switch the bond check off"
            )
        if int(check_every) != check_every or check_every < 1:
            raise ValueError(f"check_every must be a whole number of steps >= 1, got {check_every}")
        self.max_temperature_K = max_temperature_K
        self.temperature_factor = temperature_factor
        self.bond_stretch_factor = bond_stretch_factor
        self.check_every = int(check_every)
        self.raise_on_failure = bool(raise_on_failure)
        self.bonds_ = np.zeros((0, 2), dtype=np.int64)
        self.initial_lengths_ = np.zeros(0)
        self.temperature_limit_K_: float | None = None

    def __repr__(self) -> str:
        return (
            f"StabilityMonitor(max_temperature_K={self.max_temperature_K}, "
            f"temperature_factor={self.temperature_factor}, "
            f"bond_stretch_factor={self.bond_stretch_factor}, check_every={self.check_every}, "
            f"raise_on_failure={self.raise_on_failure})"
        )

    def start(self, atoms: Atoms, reference_temperature_K: float | None) -> StabilityMonitor:
        """Take the starting structure: find its bonds and fix the temperature limit.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure at step 0.
        reference_temperature_K : float or None
            Temperature the limit is a multiple of, K. None or 0 leaves only
            ``max_temperature_K`` (if any).

        Returns
        -------
        StabilityMonitor
            ``self``, ready for :meth:`check`.
        """
        self.temperature_limit_K_ = self._temperature_limit(atoms, reference_temperature_K)
        if self.bond_stretch_factor is None or len(atoms) < 2:
            self.bonds_ = np.zeros((0, 2), dtype=np.int64)
            self.initial_lengths_ = np.zeros(0)
            return self
        i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=_BOND_TOLERANCE))
        # each bond once; in small periodic cells a pair can appear through several images
        pairs = np.unique(np.stack([i, j], axis=1)[i < j], axis=0)
        self.bonds_ = pairs.reshape(-1, 2).astype(np.int64)
        self.initial_lengths_ = self._bond_lengths(atoms)
        return self

    def _temperature_limit(self, atoms: Atoms, reference_K: float | None) -> float | None:
        if self.max_temperature_K is not None:
            return float(self.max_temperature_K)
        if self.temperature_factor is None or not reference_K or reference_K <= 0:
            return None
        dof = max(atoms.get_number_of_degrees_of_freedom(), 1)
        # kinetic temperature x dof / T ~ chi-squared(dof) in equilibrium
        fluctuation = chi2.isf(_FALSE_ALARM_PROBABILITY, dof) / dof
        return float(reference_K * max(self.temperature_factor, fluctuation))

    def _bond_lengths(self, atoms: Atoms) -> np.ndarray:
        pos = atoms.positions
        vectors = pos[self.bonds_[:, 1]] - pos[self.bonds_[:, 0]]
        if atoms.pbc.any():
            _, lengths = find_mic(vectors, atoms.cell, atoms.pbc)
            return lengths
        return np.linalg.norm(vectors, axis=1)

    def describe(self) -> str:
        """The checks in force for the current run, in words."""
        parts = ["non-finite energies/forces"]
        if self.temperature_limit_K_ is not None:
            parts.append(f"temperature above {self.temperature_limit_K_:.0f} K")
        if self.bond_stretch_factor is not None:
            parts.append(
                f"any of {len(self.bonds_)} initial bonds beyond {self.bond_stretch_factor:g}x its length"
            )
        return "stops on " + ", ".join(parts) + f" (checked every {self.check_every} step(s))"

    def check(self, atoms: Atoms, step: int, time_fs: float) -> InstabilityEvent | None:
        """Check the current state; the first problem found, or None when all is well.

        Parameters
        ----------
        atoms : ase.Atoms
            The running structure, with its calculator (results are cached after a
            step, so this costs no force call).
        step : int
            The current MD step.
        time_fs : float
            The current simulation time, fs.
        """
        for find in (self._non_finite, self._hot, self._stretched):
            found = find(atoms)
            if found is not None:
                reason, message, details = found
                return InstabilityEvent(step, float(time_fs), reason, message, details)
        return None

    @staticmethod
    def _non_finite(atoms: Atoms):
        symbols = atoms.get_chemical_symbols()
        # the calculator's output first: NaN forces make NaN momenta within the same step,
        # and the report should name the cause (raw forces: a constraint must not hide a NaN)
        per_atom = {
            "forces": atoms.get_forces(apply_constraint=False),
            "positions": atoms.positions,
            "momenta": atoms.get_momenta(),
        }
        energy = atoms.get_potential_energy()
        if not np.isfinite(energy):
            return NON_FINITE, f"the potential energy is {energy}", {"quantity": "energy"}
        for name, values in per_atom.items():
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            if bad.size:
                first = int(bad[0])
                return (
                    NON_FINITE,
                    f"{name} of {bad.size} atom(s) are not finite, the first on atom "
                    f"{first} ({symbols[first]})",
                    {"quantity": name, "atoms": bad.tolist()},
                )
        return None

    def _hot(self, atoms: Atoms):
        if self.temperature_limit_K_ is None:
            return None
        temperature = atoms.get_temperature()
        if temperature <= self.temperature_limit_K_:
            return None
        return (
            TEMPERATURE,
            f"the temperature ran away to {temperature:.0f} K, above the limit of "
            f"{self.temperature_limit_K_:.0f} K",
            {"temperature_K": float(temperature), "limit_K": self.temperature_limit_K_},
        )

    def _stretched(self, atoms: Atoms):
        if self.bond_stretch_factor is None or len(self.bonds_) == 0:
            return None
        lengths = self._bond_lengths(atoms)
        ratio = lengths / self.initial_lengths_
        worst = int(np.argmax(ratio))
        if ratio[worst] <= self.bond_stretch_factor:
            return None
        a, b = (int(k) for k in self.bonds_[worst])
        sa, sb = atoms[a].symbol, atoms[b].symbol
        return (
            BOND_STRETCH,
            f"bond {sa}{a}-{sb}{b} stretched to {lengths[worst]:.2f} Å, {ratio[worst]:.1f}x its "
            f"initial {self.initial_lengths_[worst]:.2f} Å (limit {self.bond_stretch_factor:g}x)",
            {
                "atoms": (a, b),
                "symbols": (sa, sb),
                "length_A": float(lengths[worst]),
                "initial_length_A": float(self.initial_lengths_[worst]),
                "ratio": float(ratio[worst]),
                "n_stretched": int(np.sum(ratio > self.bond_stretch_factor)),
            },
        )
