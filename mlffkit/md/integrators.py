"""ASE integrators for the two ensembles mlffkit runs: NVT (Langevin) and NVE (velocity Verlet)."""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

ENSEMBLES = ("nvt", "nve")


def initialize_velocities(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Draw Maxwell–Boltzmann velocities at ``temperature_K`` (K); remove drift and rotation.

    Rotation is removed only for non-periodic systems, where it is a free motion.
    """
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)


def make_integrator(
    atoms: Atoms,
    ensemble: str = "nvt",
    *,
    timestep_fs: float = 0.5,
    temperature_K: float = 300.0,
    friction_per_fs: float = 0.01,
    rng: np.random.Generator | None = None,
) -> MolecularDynamics:
    """An ASE integrator for ``atoms`` (which must already have a calculator).

    Parameters
    ----------
    ensemble : {"nvt", "nve"}
        ``"nvt"``: Langevin thermostat; ``"nve"``: velocity Verlet.
    timestep_fs : float
        Time step in fs.
    temperature_K : float
        Thermostat temperature in K (NVT only).
    friction_per_fs : float
        Langevin friction in 1/fs (NVT only). 0.01/fs couples gently (100 fs).
    rng : numpy.random.Generator, optional
        Random stream of the Langevin noise; pass a seeded one for reproducible runs.
        Its state can be saved and restored (``rng.bit_generator.state``) to resume.
    """
    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; use one of {ENSEMBLES}")
    if timestep_fs <= 0 or not np.isfinite(timestep_fs):
        raise ValueError(f"timestep_fs must be a positive number of fs, got {timestep_fs}")
    if atoms.calc is None:
        raise ValueError("the atoms have no calculator; set atoms.calc before running MD")
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    if temperature_K <= 0:
        raise ValueError(f"temperature_K must be positive for NVT, got {temperature_K}")
    return Langevin(
        atoms,
        timestep=timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        rng=rng if rng is not None else np.random.default_rng(),
        fixcm=True,
    )
