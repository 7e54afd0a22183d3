"""Molecular dynamics with any ASE calculator, with stability checks for machine-learned potentials.

>>> from ase.build import molecule                                      # doctest: +SKIP
>>> from mlffkit.md import run_md, StabilityMonitor                     # doctest: +SKIP
>>> from mlffkit.reference import get_calculator                        # doctest: +SKIP
>>> result = run_md(molecule("CH3CH2OH"), get_calculator("gfn2"), steps=1000,
...                 temperature_K=500, trajectory="ethanol.extxyz")    # doctest: +SKIP
>>> result.stable, result.temperature.mean()                            # doctest: +SKIP
>>> nve = run_md(result.final_atoms, get_calculator("gfn2"), ensemble="nve",
...              steps=1000, init_velocities=False)                     # doctest: +SKIP
>>> nve.energy_drift()                                                  # doctest: +SKIP
"""

from mlffkit.md.integrators import ENSEMBLES, initialize_velocities, make_integrator
from mlffkit.md.result import EnergyDrift, MDResult
from mlffkit.md.runner import calculator_name, run_md
from mlffkit.md.stability import (
    InstabilityError,
    InstabilityEvent,
    InstabilityWarning,
    StabilityMonitor,
)
from mlffkit.md.trajectory import TrajectoryWriter

__all__ = [
    "ENSEMBLES",
    "EnergyDrift",
    "InstabilityError",
    "InstabilityEvent",
    "InstabilityWarning",
    "MDResult",
    "StabilityMonitor",
    "TrajectoryWriter",
    "calculator_name",
    "initialize_velocities",
    "make_integrator",
    "run_md",
]
