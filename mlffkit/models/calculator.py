"""An ASE calculator backed by a trained mlffkit model."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes


class ModelCalculator(Calculator):
    """ASE calculator giving a fitted model's energy (eV) and forces (eV/Å).

    Use it like any ASE calculator (geometry optimisation, MD with
    :mod:`mlffkit.md`); the atoms must be the system the model was trained on, with
    the same atoms in the same order. Molecular models (GDML, KRR, AutoDiffGDML)
    take isolated molecules, without periodic boundary conditions; a
    :class:`~mlffkit.models.BIGDML` model takes frames of its training supercell
    (same cell, same periodic directions, positions wrapped or not). The model
    checks this and raises a ValueError for anything else.

    Parameters
    ----------
    model : ForceFieldModel
        A fitted model.

    Attributes
    ----------
    level_of_theory : str
        What the calculator computes, for provenance and MD reports
        (:func:`mlffkit.md.calculator_name`): by default the model's display name,
        e.g. ``"sGDML (6 symmetries) (mlffkit)"``, read when asked (so it follows a
        refitted model); assign a string to describe it better (e.g. its training data).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self._level_of_theory: str | None = None

    @property
    def level_of_theory(self) -> str:
        if self._level_of_theory is not None:
            return self._level_of_theory
        return f"{self.model.display_name()} (mlffkit)"

    @level_of_theory.setter
    def level_of_theory(self, value: str) -> None:
        self._level_of_theory = str(value)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energies, forces = self.model.predict(self.atoms)
        self.results = {
            "energy": float(energies[0]),
            "free_energy": float(energies[0]),
            "forces": forces[0],
        }
