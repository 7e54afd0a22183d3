"""Running MD with any ASE calculator: recording, trajectory writing, progress and stability checks."""

from __future__ import annotations

import copy
import warnings
from contextlib import ExitStack
from numbers import Integral

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from tqdm.auto import tqdm

from mlffkit.md.integrators import ENSEMBLES, initialize_velocities, make_integrator
from mlffkit.md.result import MDResult
from mlffkit.md.stability import (
    CALCULATOR_FAILED,
    InstabilityError,
    InstabilityEvent,
    InstabilityWarning,
    StabilityMonitor,
)
from mlffkit.md.trajectory import TrajectoryWriter


def calculator_name(calc: Calculator) -> str:
    """The level of theory an ASE calculator computes, as well as it can be told.

    Uses, in order: a ``level_of_theory`` attribute, a ``method`` parameter (tblite:
    ``"GFN2-xTB"``), ``xc``/``basis`` parameters (DFT: ``"PBE/def2-SVP"``), ``"EMT"``
    for ASE's EMT, else the calculator's name.
    """
    explicit = getattr(calc, "level_of_theory", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    params = getattr(calc, "parameters", None) or {}
    if isinstance(params.get("method"), str):
        return params["method"]
    if params.get("xc") and params.get("basis"):
        return f"{params['xc']}/{params['basis']}"
    if isinstance(calc, EMT):  # also subclasses, which ASE names after the class
        return "EMT"
    return getattr(calc, "name", "") or type(calc).__name__


def _whole(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _as_monitor(monitor) -> StabilityMonitor | None:
    if monitor is True:
        return StabilityMonitor()
    if monitor is False or monitor is None:
        return None
    if isinstance(monitor, StabilityMonitor):
        return monitor
    raise TypeError(
        f"monitor must be a StabilityMonitor, True (the default checks) or False/None (no checks), "
        f"got {type(monitor).__name__}"
    )


def run_md(
    atoms: Atoms,
    calculator: Calculator | None = None,
    *,
    ensemble: str = "nvt",
    steps: int,
    timestep_fs: float = 0.5,
    temperature_K: float = 300.0,
    friction_per_fs: float = 0.01,
    seed: int | None = 0,
    init_velocities: bool = True,
    trajectory=None,
    interval: int = 10,
    monitor: StabilityMonitor | bool | None = True,
    progress: bool = True,
    overwrite: bool = False,
) -> MDResult:
    """Run molecular dynamics with an ASE calculator and record energies, temperature and frames.

    The input ``atoms`` are not changed: the run works on a copy. Any ASE calculator
    works (GFN2-xTB from :func:`mlffkit.reference.get_calculator`, ASE's EMT, a
    machine-learned model). Atoms without constraints run with their centre of mass
    held still (:class:`ase.constraints.FixCom`); temperatures then count the 3N - 3
    degrees of freedom that move. Atoms with constraints (e.g. ``FixAtoms``) keep them.

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure (at least two atoms; repeat a one-atom crystal cell).
        Its momenta are used when ``init_velocities=False``.
    calculator : ase.calculators.calculator.Calculator, optional
        Energies (eV) and forces (eV/Å). Default: ``atoms.calc``.
    ensemble : {"nvt", "nve"}, default "nvt"
        ``"nvt"``: Langevin thermostat at ``temperature_K``; ``"nve"``: velocity Verlet.
    steps : int
        Number of MD steps.
    timestep_fs : float, default 0.5
        Time step, fs. 0.5 fs resolves X-H vibrations; metals allow 2-5 fs.
    temperature_K : float, default 300
        Thermostat target (NVT) and temperature of the initial Maxwell-Boltzmann
        velocities, K.
    friction_per_fs : float, default 0.01
        Langevin friction, 1/fs (NVT only); 0.01 couples over ~100 fs.
    seed : int or None, default 0
        Seeds the initial velocities and the Langevin noise: the same seed gives the
        same trajectory. None draws fresh randomness.
    init_velocities : bool, default True
        Draw Maxwell-Boltzmann velocities at ``temperature_K`` (centre-of-mass motion
        removed, and rotation for molecules). False keeps the momenta of ``atoms``,
        to continue a run from ``result.final_atoms``.
    trajectory : str or Path, optional
        File for the recorded frames (``.traj`` or ``.extxyz``), written as the run goes
        and moved into place when it ends, also when it ends early.
    interval : int, default 10
        Record (and write) every ``interval`` steps; step 0 is always recorded.
    monitor : StabilityMonitor, True or False, default True
        Checks that stop a run that blows up (True: :class:`StabilityMonitor` defaults;
        False or None: no checks).
    progress : bool, default True
        Show a progress bar with the current temperature and total energy.
    overwrite : bool, default False
        Replace an existing trajectory file.

    Returns
    -------
    MDResult
        ``steps // interval + 1`` recorded frames for a complete run, fewer when it was
        stopped. ``result.stable`` is False and ``result.failure`` says when and why if
        the monitor stopped it.

    Raises
    ------
    ValueError
        For bad arguments, or no calculator.
    FileExistsError
        When ``trajectory`` exists and ``overwrite`` is False (before anything runs).
    InstabilityError
        When the run fails and the monitor has ``raise_on_failure=True``; the file is
        written and the exception carries the result. Otherwise an
        :class:`InstabilityWarning` is emitted.

    Examples
    --------
    >>> from ase.build import molecule                                     # doctest: +SKIP
    >>> from mlffkit.reference import get_calculator                      # doctest: +SKIP
    >>> result = run_md(molecule("CH3CH2OH"), get_calculator("gfn2"), steps=2000,
    ...                 temperature_K=500, trajectory="ethanol.extxyz")   # doctest: +SKIP
    >>> print(result.summary())                                            # doctest: +SKIP
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) < 2:
        raise ValueError(
            f"MD needs at least 2 atoms (the centre of mass is held fixed), got {len(atoms)}; "
            "for a one-atom crystal cell, run on a supercell such as atoms.repeat(3)"
        )
    ensemble = str(ensemble).lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; use one of {ENSEMBLES}")
    steps = _whole(steps, "steps", 0)
    interval = _whole(interval, "interval", 1)
    if not np.isfinite(temperature_K) or temperature_K < 0:
        raise ValueError(f"temperature_K must be a temperature >= 0 in K, got {temperature_K}")
    calc = calculator if calculator is not None else atoms.calc
    if calc is None:
        raise ValueError("no calculator: pass calculator=... or set atoms.calc before running MD")
    checks = _as_monitor(monitor)
    writer = TrajectoryWriter(trajectory, overwrite=overwrite) if trajectory is not None else None

    work = atoms.copy()
    work.calc = calc
    if not work.constraints:
        # Hold the centre of mass still (ASE's recommended FixCom). It lives on this private
        # copy only; recorded forces are the calculator's own, not the constrained ones.
        work.set_constraint(FixCom())
    rng = np.random.default_rng(seed)
    dyn = make_integrator(
        work,
        ensemble,
        timestep_fs=timestep_fs,
        temperature_K=temperature_K,
        friction_per_fs=friction_per_fs,
        rng=rng,
    )
    if init_velocities:
        initialize_velocities(work, temperature_K, rng)
    reference_K = (
        temperature_K if (ensemble == "nvt" or init_velocities) else work.get_temperature()
    )
    if checks is not None:
        checks.start(work, reference_K)

    rec = _Recorder(atoms.constraints, timestep_fs)
    failure: InstabilityEvent | None = None
    interrupted = False
    with ExitStack() as stack:
        if writer is not None:
            stack.enter_context(writer)  # refuses an existing file before any force call
        bar = stack.enter_context(
            tqdm(
                total=steps,
                disable=not progress,
                unit="step",
                desc=f"{ensemble.upper()} {work.get_chemical_formula(mode='hill')}",
            )
        )
        work.get_forces()  # a calculator that fails on the start structure raises here, as usual
        try:
            for _ in dyn.irun(steps):
                step = dyn.nsteps
                if step:
                    bar.update(1)
                record = step % interval == 0
                if checks is not None and (record or step % checks.check_every == 0):
                    failure = checks.check(work, step, step * timestep_fs)
                    if failure is not None:
                        break
                if record:
                    frame = rec.record(work, step)
                    if writer is not None:
                        writer.write(frame)
                    bar.set_postfix(
                        T=f"{rec.temperature[-1]:.0f} K",
                        E_tot=f"{rec.potential[-1] + rec.kinetic[-1]:.4f} eV",
                        refresh=False,
                    )
        except CalculationFailed as err:
            step = dyn.nsteps + 1  # the force call of this step failed
            failure = InstabilityEvent(
                step,
                step * timestep_fs,
                CALCULATOR_FAILED,
                f"the calculator failed: {err}",
                {"error": str(err)},
            )
        except KeyboardInterrupt:
            # Stopping a long run from a notebook keeps what was recorded.
            interrupted = True
            warnings.warn(
                f"MD interrupted at step {dyn.nsteps}; returning the {len(rec.frames)} frames recorded",
                stacklevel=2,
            )

    final = work.copy()
    final.calc = None
    final.set_constraint(copy.deepcopy(atoms.constraints))
    result = MDResult(
        ensemble=ensemble,
        timestep_fs=float(timestep_fs),
        temperature_K=float(reference_K),
        interval=interval,
        steps=np.array(rec.steps, dtype=np.int64),
        time_fs=np.array(rec.steps, dtype=float) * timestep_fs,
        potential_energy=np.array(rec.potential),
        kinetic_energy=np.array(rec.kinetic),
        temperature=np.array(rec.temperature),
        frames=rec.frames,
        final_atoms=final,
        n_steps=dyn.nsteps,
        n_steps_requested=steps,
        failure=failure,
        interrupted=interrupted,
        level_of_theory=calculator_name(calc),
        seed=seed,
        trajectory=writer.path if writer is not None else None,
        monitor_description=checks.describe() if checks is not None else "",
    )
    if failure is not None:
        if checks is not None and checks.raise_on_failure:
            raise InstabilityError(result)
        warnings.warn(
            f"MD stopped, unstable at {failure}. The result keeps the {result.n_frames} frames "
            "recorded before; result.failure has the details",
            InstabilityWarning,
            stacklevel=2,
        )
    return result


class _Recorder:
    """Collects the recorded frames and their energies during a run."""

    def __init__(self, constraints, timestep_fs: float):
        self._constraints = constraints
        self._timestep_fs = timestep_fs
        self.steps: list[int] = []
        self.potential: list[float] = []
        self.kinetic: list[float] = []
        self.temperature: list[float] = []
        self.frames: list[Atoms] = []

    def record(self, atoms: Atoms, step: int) -> Atoms:
        """Store the current state; return it as a frame with energy, forces and momenta."""
        energy = atoms.get_potential_energy()
        # the calculator's forces, not the constrained ones the integrator used: these are labels
        forces = atoms.get_forces(apply_constraint=False)
        frame = atoms.copy()
        frame.set_constraint(copy.deepcopy(self._constraints))
        frame.info.update(md_step=step, time_fs=step * self._timestep_fs)
        frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces.copy())
        self.steps.append(step)
        self.potential.append(float(energy))
        self.kinetic.append(float(atoms.get_kinetic_energy()))
        self.temperature.append(float(atoms.get_temperature()))
        self.frames.append(frame)
        return frame
