"""An ASE calculator backed by a trained mlffkit model."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes


class ModelCalculator(Calculator):
    """ASE calculator giving a fitted model's energy (eV) and forces (eV/Å).

    Use it like any ASE calculator (geometry optimisation, MD with
    :mod:`mlffkit.md`); the atoms must be the molecule the model was trained on,
    in the same order, without periodic boundary conditions.

    Parameters
    ----------
    model : ForceFieldModel
        A fitted model.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energies, forces = self.model.predict(self.atoms)
        self.results = {
            "energy": float(energies[0]),
            "free_energy": float(energies[0]),
            "forces": forces[0],
        }
