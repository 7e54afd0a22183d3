"""The outcome of an MD run: recorded frames, energies, temperature, stability and energy drift."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from mlffkit.md.stability import InstabilityEvent


@dataclass(frozen=True)
class EnergyDrift:
    """How well an NVE run conserved its total energy.

    Attributes
    ----------
    slope_meV_per_atom_per_ps : float
        Slope of a least-squares line through the total energy against time,
        meV/atom/ps: the systematic drift.
    max_deviation_meV_per_atom : float
        Largest ``|E_tot(t) - E_tot(0)|`` over the recorded frames, meV/atom: drift
        and fluctuation together.
    """

    slope_meV_per_atom_per_ps: float
    max_deviation_meV_per_atom: float

    def __str__(self) -> str:
        return (
            f"drift {self.slope_meV_per_atom_per_ps:+.3g} meV/atom/ps, "
            f"max |E_tot - E_tot(0)| {self.max_deviation_meV_per_atom:.3g} meV/atom"
        )


@dataclass
class MDResult:
    """What :func:`~mlffkit.md.run_md` recorded: one entry per recorded frame.

    Frames are recorded at step 0 and every ``interval`` steps. Energies are in eV,
    times in fs, temperatures in K (ASE's kinetic temperature: over the 3N - 3 degrees
    of freedom left when the centre of mass is held, fewer under other constraints).

    Attributes
    ----------
    ensemble : str
        ``"nvt"`` or ``"nve"``.
    timestep_fs : float
        Integration time step, fs.
    temperature_K : float
        Thermostat target (NVT) or temperature the velocities were drawn at (NVE), K.
    interval : int
        Steps between recorded frames.
    steps : ndarray of int, shape (n_frames,)
        MD step of each recorded frame.
    time_fs : ndarray, shape (n_frames,)
        Simulation time of each frame, fs.
    potential_energy, kinetic_energy : ndarray, shape (n_frames,)
        eV.
    temperature : ndarray, shape (n_frames,)
        Kinetic temperature, K.
    frames : list of ase.Atoms
        The recorded structures with momenta, and their energy and forces (eV, eV/Å)
        on a SinglePointCalculator.
    final_atoms : ase.Atoms
        The structure and momenta where the run ended (on failure, the failed
        state); continue a run with ``run_md(result.final_atoms, calc, init_velocities=False)``.
    n_steps : int
        Steps completed.
    n_steps_requested : int
        Steps asked for.
    failure : InstabilityEvent or None
        Why and when the run was stopped, None for a stable run.
    interrupted : bool
        True when the run was stopped by the user (KeyboardInterrupt).
    level_of_theory : str
        The calculator's method, e.g. ``"GFN2-xTB"`` or ``"EMT"``.
    seed : int or None
        Seed of the velocities and the Langevin noise.
    trajectory : Path or None
        File the frames were written to.
    """

    ensemble: str
    timestep_fs: float
    temperature_K: float
    interval: int
    steps: np.ndarray
    time_fs: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    temperature: np.ndarray
    frames: list[Atoms]
    final_atoms: Atoms
    n_steps: int
    n_steps_requested: int
    failure: InstabilityEvent | None = None
    interrupted: bool = False
    level_of_theory: str = ""
    seed: int | None = None
    trajectory: Path | None = None
    monitor_description: str = field(default="", repr=False)

    # ------------------------------------------------------------------ derived
    @property
    def stable(self) -> bool:
        """True unless the stability monitor (or a failed calculation) stopped the run."""
        return self.failure is None

    @property
    def total_energy(self) -> np.ndarray:
        """Potential + kinetic energy per recorded frame, eV, shape (n_frames,)."""
        return self.potential_energy + self.kinetic_energy

    @property
    def n_atoms(self) -> int:
        return len(self.final_atoms)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def positions(self) -> np.ndarray:
        """Positions of the recorded frames, Å, shape (n_frames, n_atoms, 3)."""
        return np.array([frame.positions for frame in self.frames])

    def __repr__(self) -> str:
        state = "stable" if self.stable else f"unstable: {self.failure}"
        return (
            f"MDResult({self.ensemble.upper()}, {self.n_atoms} atoms, {self.n_steps}/"
            f"{self.n_steps_requested} steps of {self.timestep_fs:g} fs, {self.n_frames} frames, {state})"
        )

    def energy_drift(self) -> EnergyDrift:
        """Total-energy drift of an NVE run (meV/atom/ps and meV/atom).

        Returns
        -------
        EnergyDrift
            The slope of a linear fit of ``E_tot`` against time and the largest
            deviation from ``E_tot(0)``, both per atom.

        Raises
        ------
        ValueError
            For an NVT run (a thermostat exchanges energy, so none is conserved), or
            when fewer than two frames were recorded.
        """
        if self.ensemble != "nve":
            raise ValueError(
                "energy drift measures energy conservation, which holds in NVE only; this run "
                f"is {self.ensemble.upper()} (its thermostat exchanges energy): run with ensemble='nve'"
            )
        if self.n_frames < 2:
            raise ValueError(
                f"energy drift needs at least two recorded frames, this run has {self.n_frames}; "
                "run more steps or record more often (smaller interval)"
            )
        e_mev = self.total_energy / self.n_atoms * 1e3
        slope_per_fs = np.polyfit(self.time_fs, e_mev, 1)[0]
        return EnergyDrift(
            slope_meV_per_atom_per_ps=float(slope_per_fs * 1e3),
            max_deviation_meV_per_atom=float(np.max(np.abs(e_mev - e_mev[0]))),
        )

    # ------------------------------------------------------------------ reporting
    def summary(self) -> str:
        """A few lines: what ran, whether it was stable, temperature, energy drift (NVE)."""
        formula = self.final_atoms.get_chemical_formula(mode="hill")
        t_ps = self.n_steps * self.timestep_fs / 1e3
        lines = [
            f"{self.ensemble.upper()} MD of {formula} ({self.n_atoms} atoms) with "
            f"{self.level_of_theory or 'an unnamed calculator'}: {self.n_steps} steps x "
            f"{self.timestep_fs:g} fs = {t_ps:.3g} ps, {self.n_frames} frames (every {self.interval} steps)",
        ]
        if self.failure is not None:
            lines.append(f"  UNSTABLE: stopped at {self.failure}")
        elif self.interrupted:
            lines.append(
                f"  interrupted by the user after {self.n_steps} of {self.n_steps_requested} steps"
            )
        else:
            lines.append(
                "  stable" + (f": {self.monitor_description}" if self.monitor_description else "")
            )
        target = "target" if self.ensemble == "nvt" else "initial"
        if self.n_frames:
            lines.append(
                f"  temperature: mean {self.temperature.mean():.1f} K, std {self.temperature.std():.1f} K "
                f"({target} {self.temperature_K:g} K)"
            )
        if self.ensemble == "nve" and self.n_frames >= 2:
            lines.append(f"  total energy: {self.energy_drift()}")
        if self.trajectory is not None:
            lines.append(f"  trajectory: {self.trajectory}")
        return "\n".join(lines)

    def plot(self, ax=None):
        """Energies and temperature against time.

        Parameters
        ----------
        ax : matplotlib Axes or pair of Axes, optional
            None: a new figure with an energy panel above a temperature panel. Two
            Axes: energies on the first, temperature on the second. One Axes:
            energies on it and temperature on a twin y axis.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, (ax_e, ax_t) = plt.subplots(
                2, 1, sharex=True, figsize=(7, 5), layout="constrained"
            )
        elif np.iterable(ax):
            ax_e, ax_t = ax
            fig = ax_e.figure
        else:
            ax_e, ax_t = ax, ax.twinx()
            fig = ax.figure
            ax_e.set_xlabel("time (fs)")
        t = self.time_fs
        # energies relative to the starting total energy: absolute values of molecules
        # are hundreds of eV and would hide fluctuations of a few meV
        e0 = self.total_energy[0] if self.n_frames else 0.0
        ax_e.plot(t, self.potential_energy - e0, label="potential - E_tot(0)")
        ax_e.plot(t, self.kinetic_energy, label="kinetic")
        ax_e.plot(t, self.total_energy - e0, label="total - E_tot(0)", color="k")
        ax_e.set_ylabel("energy (eV)")
        ax_e.legend(loc="best", fontsize="small")
        ax_t.plot(t, self.temperature, color="tab:red", label="temperature")
        ax_t.axhline(self.temperature_K, color="tab:red", ls=":", lw=1)
        ax_t.set_ylabel("temperature (K)")
        ax_t.set_xlabel("time (fs)")
        if self.failure is not None:
            for a in (ax_e, ax_t):
                a.axvline(self.failure.time_fs, color="tab:purple", ls="--", lw=1)
            ax_e.set_title(
                f"unstable: {self.failure.reason} at {self.failure.time_fs:.0f} fs",
                fontsize="medium",
            )
        return fig

    # ------------------------------------------------------------------ data
    def to_dataset(self, name: str | None = None, level_of_theory: str | None = None):
        """The recorded frames as a :class:`mlffkit.data.Dataset`, labelled by the run's calculator.

        The energies and forces are those the calculator computed during the run (eV,
        eV/Å); nothing is recomputed. Frames after a failure are not included.

        Parameters
        ----------
        name : str, optional
            Dataset name (default: formula, ensemble and temperature).
        level_of_theory : str, optional
            Overrides the calculator's name.

        Returns
        -------
        mlffkit.data.Dataset
        """
        from mlffkit.data import Dataset

        formula = self.final_atoms.get_chemical_formula(mode="hill")
        return Dataset.from_atoms(
            self.frames,
            name=name
            if name is not None
            else f"{formula}-{self.ensemble}-md-{self.temperature_K:g}K",
            level_of_theory=level_of_theory
            if level_of_theory is not None
            else self.level_of_theory,
            metadata={
                "source": "mlffkit.md.run_md",
                "ensemble": self.ensemble,
                "timestep_fs": self.timestep_fs,
                "temperature_K": self.temperature_K,
                "interval": self.interval,
                "seed": self.seed,
                "frame_spacing_fs": self.interval * self.timestep_fs,
            },
        )
