"""Units: names, conversion factors and the two reporting units (meV and kcal/mol).

mlffkit stores and computes in ASE's units: eV for energy, Å for length, eV/Å for
forces. Everything that reads foreign data converts at the door with the factors
below, and every conversion goes through :func:`energy_factor` / :func:`length_factor`
so that an unknown unit name is an error rather than a silent factor of one.
"""

from __future__ import annotations

import numpy as np
from ase import units as _ase

#: eV in one kcal/mol (about 0.0433641 eV)
KCAL_PER_MOL = _ase.kcal / _ase.mol
#: eV in one kJ/mol
KJ_PER_MOL = _ase.kJ / _ase.mol
#: eV in one Hartree
HARTREE = _ase.Hartree
#: Å in one Bohr radius
BOHR = _ase.Bohr

_ENERGY = {
    "ev": 1.0,
    "mev": 1e-3,
    "kcal/mol": KCAL_PER_MOL,
    "kj/mol": KJ_PER_MOL,
    "ha": HARTREE,
    "hartree": HARTREE,
    "au": HARTREE,
    "ry": _ase.Rydberg,
}
_LENGTH = {
    "ang": 1.0,
    "angstrom": 1.0,
    "a": 1.0,
    "å": 1.0,
    "bohr": BOHR,
    "au": BOHR,
    "nm": 10.0,
    "pm": 0.01,
}

ENERGY_UNITS = ("eV", "meV", "kcal/mol", "kJ/mol", "Ha", "Ry")
LENGTH_UNITS = ("Ang", "bohr", "nm", "pm")


def _norm(unit) -> str:
    if isinstance(unit, bytes):
        unit = unit.decode()
    if isinstance(unit, np.ndarray):
        unit = unit.item()
        if isinstance(unit, bytes):
            unit = unit.decode()
    return str(unit).strip().lower().replace(" ", "")


def energy_factor(unit) -> float:
    """eV per ``unit``; e.g. ``energy_factor("kcal/mol") == 0.04336...``.

    Raises
    ------
    ValueError
        If the unit is unknown; the message lists the known ones.
    """
    key = _norm(unit)
    if key not in _ENERGY:
        raise ValueError(
            f"unknown energy unit {unit!r}; use one of {', '.join(ENERGY_UNITS)}"
        )
    return _ENERGY[key]


def length_factor(unit) -> float:
    """Å per ``unit``; e.g. ``length_factor("bohr") == 0.529...``.

    Raises
    ------
    ValueError
        If the unit is unknown; the message lists the known ones.
    """
    key = _norm(unit)
    if key not in _LENGTH:
        raise ValueError(
            f"unknown length unit {unit!r}; use one of {', '.join(LENGTH_UNITS)}"
        )
    return _LENGTH[key]


def canonical_energy_unit(unit) -> str:
    """The spelling mlffkit uses for an energy unit (``'kcal/mol'``, ``'eV'``, ...)."""
    factor = energy_factor(unit)
    for name in ENERGY_UNITS:
        if _ENERGY[_norm(name)] == factor:
            return name
    raise AssertionError(unit)  # every factor has a canonical name


def canonical_length_unit(unit) -> str:
    """The spelling mlffkit uses for a length unit (``'Ang'``, ``'bohr'``, ...)."""
    factor = length_factor(unit)
    for name in LENGTH_UNITS:
        if _LENGTH[_norm(name)] == factor:
            return name
    raise AssertionError(unit)


def convert_energy(value, from_unit, to_unit):
    """Convert energies between units (array or scalar)."""
    return np.asarray(value) * (energy_factor(from_unit) / energy_factor(to_unit))


def convert_force(value, from_energy, from_length, to_energy="eV", to_length="Ang"):
    """Convert forces given as energy/length between unit pairs."""
    scale = (energy_factor(from_energy) / length_factor(from_length)) / (
        energy_factor(to_energy) / length_factor(to_length)
    )
    return np.asarray(value) * scale


def to_mev(value_ev):
    """eV → meV."""
    return np.asarray(value_ev) * 1e3


def to_kcal_mol(value_ev):
    """eV → kcal/mol (also eV/Å → kcal/mol/Å)."""
    return np.asarray(value_ev) / KCAL_PER_MOL
