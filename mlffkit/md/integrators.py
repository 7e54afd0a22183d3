"""ASE integrators for the two ensembles mlffkit runs: NVT (Langevin) and NVE (velocity Verlet)."""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

try:  # ASE >= 3.29 deprecates MaxwellBoltzmannDistribution in favour of thermalize_momenta
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # pragma: no cover - older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms: Atoms, temperature_K: float, *, rng=None) -> None:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


ENSEMBLES = ("nvt", "nve")


def initialize_velocities(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Draw Maxwell–Boltzmann velocities at ``temperature_K`` (K); remove drift and rotation.

    Rotation is removed only for non-periodic systems, where it is a free motion. The
    momenta are then scaled so that the kinetic temperature ``atoms.get_temperature()``
    is exactly ``temperature_K`` (as LAMMPS's ``velocity create`` does): a small
    system's random draw would otherwise start tens of percent off.
    """
    thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        # a linear molecule has a zero moment of inertia, which ASE skips after dividing by it
        with np.errstate(divide="ignore", invalid="ignore"):
            ZeroRotation(atoms)
    drawn = atoms.get_temperature()
    if temperature_K > 0 and drawn > 0:
        atoms.set_momenta(atoms.get_momenta() * np.sqrt(temperature_K / drawn))


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

    The atoms are not changed. Langevin's deprecated ``fixcm`` option is not used (it
    does not sample the canonical distribution): the thermostat acts on all 3N degrees
    of freedom, so a free molecule's centre of mass diffuses slowly. To hold it still,
    give the atoms :class:`ase.constraints.FixCom` first, as
    :func:`mlffkit.md.run_md` does; ``atoms.get_temperature()`` then counts 3N - 3
    degrees of freedom, and ``atoms.get_forces()`` returns the constrained forces (read
    the calculator's own with ``apply_constraint=False``).

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
    if ensemble == "nvt" and not temperature_K > 0:
        raise ValueError(f"temperature_K must be positive for NVT, got {temperature_K}")
    if ensemble == "nvt" and not friction_per_fs > 0:
        raise ValueError(
            f"friction_per_fs must be positive for NVT, got {friction_per_fs}; "
            "0.01 (a 100 fs coupling time) is a gentle default, use ensemble='nve' for none"
        )
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    return Langevin(
        atoms,
        timestep=timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        rng=rng if rng is not None else np.random.default_rng(),
        fixcm=False,
    )
