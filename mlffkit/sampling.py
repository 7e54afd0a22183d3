"""Make training data: Langevin MD that keeps every ``stride``-th frame, and (re)labelling.

:func:`sample` runs NVT Langevin dynamics with a reference calculator (GFN2-xTB, EMT,
DFT, ...) and keeps decorrelated frames, optionally relabelled with a second, more
expensive method (sample with GFN2-xTB, label with DFT). Long runs survive being
killed: frames are appended to a work folder beside the output as they are made and
the full dynamical state is checkpointed atomically after each one. Starting again with
the same arguments continues where the run stopped and produces exactly the frames an
uninterrupted run would have produced.

:func:`label` computes energies and forces of existing frames with a calculator.

Units are ASE's: Å, eV, eV/Å, fs, K.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from scipy.stats import chi2
from tqdm.auto import tqdm

from mlffkit.data.dataset import Dataset
from mlffkit.fileio import atomic_path, check_writable
from mlffkit.md.integrators import initialize_velocities, make_integrator
from mlffkit.reference import calculator_provenance, get_calculator

#: Kinetic temperature, in units of the target, above which a run counts as blown up.
RUNAWAY_TEMPERATURE_FACTOR = 5.0
#: For very small systems the instantaneous temperature fluctuates widely; the runaway
#: threshold is raised to the temperature a thermalised system exceeds with this
#: probability per step (chi-squared with the number of degrees of freedom).
RUNAWAY_FALSE_ALARM_PROBABILITY = 1e-12

_FORMAT_VERSION = 1


def _resolve_calculator(calc: Calculator | str, atoms: Atoms) -> Calculator:
    return get_calculator(calc, atoms) if isinstance(calc, str) else calc


def _evaluate(calc: Calculator, atoms: Atoms) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/Å) of ``atoms`` from a clean calculator state.

    The reset drops whatever the calculator carries from earlier calls (neighbour lists,
    SCF guesses), so that the result depends on the geometry alone.
    """
    calc.reset()
    work = atoms.copy()
    work.calc = calc
    energy = float(work.get_potential_energy())
    forces = np.array(work.get_forces(apply_constraint=False), dtype=np.float64)
    return energy, forces


def label(frames, calculator: Calculator | str, *, progress: bool = True) -> Dataset:
    """Compute energies and forces of existing frames with ``calculator``.

    Parameters
    ----------
    frames : Dataset or sequence of ase.Atoms
        The structures. Their cells, periodicity, charges and spins are kept; labels
        they already carry are replaced.
    calculator : ase Calculator or str
        The reference method, or its name for :func:`mlffkit.reference.get_calculator`
        (charge and spin are then taken from the first frame's ``info``).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Dataset
        The same frames with energies (eV) and forces (eV/Å) of the new method.
        ``level_of_theory`` names that method; for a Dataset, its name, metadata and
        source indices are kept and ``metadata["labels"]`` records the labelling.

    Raises
    ------
    ValueError
        If a computed energy or force is not finite (the frame is named).
    """
    source = frames if isinstance(frames, Dataset) else None
    images = frames.to_atoms() if source is not None else list(frames)
    if not images:
        raise ValueError("no frames to label; pass a Dataset or a non-empty list of ase.Atoms")
    calc = _resolve_calculator(calculator, images[0])
    prov = calculator_provenance(calc)
    energies, forces = [], []
    start = time.perf_counter()
    for i, at in enumerate(tqdm(images, desc=f"labelling ({prov['level_of_theory']})",
                                disable=not progress)):
        energy, f = _evaluate(calc, at)
        if not (np.isfinite(energy) and np.all(np.isfinite(f))):
            raise ValueError(
                f"{prov['level_of_theory']} gave a non-finite energy or force for frame {i}; "
                "check that structure (overlapping atoms?) and the calculator settings"
            )
        energies.append(energy)
        forces.append(f)
    metadata = dict(source.metadata) if source is not None else {}
    metadata["labels"] = {**prov, "wall_time_s": round(time.perf_counter() - start, 3),
                          "software": _software_versions(prov)}
    return Dataset(
        numbers=[at.numbers for at in images],
        positions=[at.positions for at in images],
        energies=energies,
        forces=forces,
        cell=source.cell if source is not None else _cells(images),
        pbc=np.array([at.pbc for at in images]),
        charge=[int(at.info.get("charge", 0)) for at in images],
        spin=[int(at.info.get("spin", 0)) for at in images],
        name=source.name if source is not None else images[0].get_chemical_formula(),
        level_of_theory=prov["level_of_theory"],
        metadata=metadata,
        source_indices=source.source_indices if source is not None else None,
        source_fingerprint=source.source_fingerprint if source is not None else None,
    )


def _cells(images: list[Atoms]) -> np.ndarray | None:
    if not any(at.pbc.any() for at in images):
        return None
    return np.array([at.cell.array for at in images])


def _software_versions(*provenances: dict) -> dict:
    from mlffkit import __version__

    out = {"mlffkit": __version__, "ase": version("ase"), "numpy": np.__version__}
    for prov in provenances:
        if prov["engine_version"] is not None:
            out[prov["engine"]] = prov["engine_version"]
    return out


def _degrees_of_freedom(atoms: Atoms) -> int:
    """Degrees of freedom ``atoms.get_temperature()`` counts (3N minus constrained ones)."""
    return 3 * len(atoms) - sum(c.get_removed_dof(atoms) for c in atoms.constraints)


def runaway_temperature(temperature_K: float, dof: int) -> float:
    """Kinetic temperature (K) above which a Langevin run at ``temperature_K`` is taken as unstable.

    ``RUNAWAY_TEMPERATURE_FACTOR`` times the target, raised for systems so small that a
    healthy run would reach that value by chance more often than
    ``RUNAWAY_FALSE_ALARM_PROBABILITY`` per step.
    """
    chance = chi2.isf(RUNAWAY_FALSE_ALARM_PROBABILITY, dof) / dof
    return temperature_K * max(RUNAWAY_TEMPERATURE_FACTOR, chance)


class _WorkFolder:
    """The files of an unfinished run: ``frames.f64`` (append-only) and ``checkpoint.npz``.

    A frame is a fixed-size float64 record (energy, positions, forces), so a file cut
    anywhere is repaired by truncating it to the records the checkpoint vouches for.
    """

    def __init__(self, output: Path):
        self.path = output.with_name(output.name + ".sampling")
        self.frames = self.path / "frames.f64"
        self.checkpoint = self.path / "checkpoint.npz"

    def exists(self) -> bool:
        return self.checkpoint.exists()

    def create(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self.frames.touch()

    def append(self, record: np.ndarray) -> None:
        with open(self.frames, "ab") as fh:
            fh.write(np.ascontiguousarray(record, dtype="<f8").tobytes())
            fh.flush()
            os.fsync(fh.fileno())

    def save_state(self, **state) -> None:
        with atomic_path(self.checkpoint, overwrite=True) as tmp:
            np.savez(tmp, **state)

    def load_state(self) -> dict:
        with np.load(self.checkpoint, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def read_records(self, n_records: int, record_len: int) -> np.ndarray:
        """The first ``n_records`` records; a partly written one after them is cut off."""
        want = n_records * record_len * 8
        have = self.frames.stat().st_size
        if have < want:
            raise RuntimeError(
                f"{self.frames} holds {have} bytes but the checkpoint vouches for {n_records} "
                f"frames ({want} bytes); the work folder is damaged: delete {self.path} "
                "(or pass overwrite=True) to start the run again"
            )
        if have > want:  # a frame written after the last checkpoint: it will be made again
            with open(self.frames, "r+b") as fh:
                fh.truncate(want)
        return np.fromfile(self.frames, dtype="<f8").reshape(n_records, record_len)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _signature(atoms: Atoms, md_prov: dict, label_prov: dict | None, **args) -> dict:
    """Everything that determines the frames; a run only resumes if this is unchanged."""
    geometry = hashlib.md5()
    for arr in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
        geometry.update(np.ascontiguousarray(arr).tobytes())
    constraints = {"constraints": [c.todict() for c in atoms.constraints]} if atoms.constraints else {}
    signature = {
        **constraints,
        "format_version": _FORMAT_VERSION,
        "initial_structure_md5": geometry.hexdigest(),
        "charge": int(atoms.info.get("charge", 0)),
        "spin": int(atoms.info.get("spin", 0)),
        "md_calculator": {k: md_prov[k] for k in ("level_of_theory", "calculator", "parameters")},
        "label_calculator": None if label_prov is None else
        {k: label_prov[k] for k in ("level_of_theory", "calculator", "parameters")},
        **args,
    }
    # in the form it takes after a trip through the checkpoint, so that the two compare equal
    return json.loads(json.dumps(signature, default=_json_default))


def _json_default(obj):
    return obj.tolist() if isinstance(obj, np.ndarray | np.generic) else str(obj)


def _check_same_run(saved: dict, now: dict, work: Path) -> None:
    changed = [
        f"{key}: {saved.get(key)!r} in the unfinished run, {now.get(key)!r} now"
        for key in sorted(set(saved) | set(now))
        if saved.get(key) != now.get(key)
    ]
    if changed:
        raise ValueError(
            f"cannot resume the unfinished run in {work}: its arguments differ ("
            + "; ".join(changed)
            + "). Call again with the original arguments to continue it, or pass "
            "overwrite=True (CLI: --overwrite) to discard it and start afresh"
        )


def sample(
    atoms: Atoms,
    calculator: Calculator | str,
    *,
    n_frames: int,
    stride: int,
    temperature_K: float,
    output,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.01,
    equilibration_steps: int | None = None,
    label_calculator: Calculator | str | None = None,
    seed: int = 0,
    name: str | None = None,
    overwrite: bool = False,
    resume: bool = True,
    progress: bool = True,
) -> Dataset:
    """Langevin MD at ``temperature_K`` keeping every ``stride``-th frame; resumable.

    Velocities are drawn from the Maxwell–Boltzmann distribution, the system is
    equilibrated for ``equilibration_steps``, then one frame is kept every ``stride``
    steps until ``n_frames`` are kept. Each frame is labelled with ``calculator`` (the
    one driving the dynamics) or, if given, with ``label_calculator``.

    The thermostat acts on all 3N degrees of freedom, so the centre of mass diffuses
    (harmless for translation-invariant models). To hold it still, give ``atoms`` an
    :class:`ase.constraints.FixCom` constraint; constraints are kept, and the stored
    forces are the calculator's, not the constrained ones.

    While it runs, frames go to a work folder ``<output>.sampling/`` and the state
    (positions, momenta, step, frames kept, random-number generator state) is
    checkpointed atomically after every kept frame. If the process dies, calling
    ``sample`` again with the same arguments continues the run: no frame is lost or
    repeated, and the frames are identical to those of an uninterrupted run. (To make
    that exact, each calculator is reset at a checkpoint, so the run always continues
    from the state a resumed run starts from; this costs one extra force evaluation per
    kept frame.) When all frames are made, the dataset is written to ``output`` with
    :meth:`Dataset.save` and the work folder is removed.

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure (not modified). ``info["charge"]`` and ``info["spin"]`` are
        used when a calculator is given by name and are stored with the frames.
    calculator : ase Calculator or str
        Drives the dynamics: a calculator or a name for
        :func:`mlffkit.reference.get_calculator` (``"gfn2"``, ``"emt"``, ...).
    n_frames : int
        Number of frames to keep.
    stride : int
        MD steps between kept frames; choose it longer than the correlation time of
        the quantities you care about (see the data cards of the bundled datasets).
    temperature_K : float
        Thermostat temperature, K.
    output : str or Path
        Where the finished dataset is written (``.npz`` or ``.extxyz``).
    timestep_fs : float, default 0.5
        MD time step, fs. 0.5 fs resolves X–H vibrations.
    friction_per_fs : float, default 0.01
        Langevin friction, 1/fs (0.01: a 100 fs coupling time).
    equilibration_steps : int, optional
        Steps run before the first kept frame. Default: five thermostat coupling times,
        ``round(5 / (friction_per_fs * timestep_fs))`` (1000 steps with the defaults).
    label_calculator : ase Calculator or str, optional
        Labels the kept frames instead of ``calculator``.
    seed : int, default 0
        Seeds the velocities and the Langevin noise.
    name : str, optional
        Dataset name (default: the chemical formula).
    overwrite : bool, default False
        Replace an existing ``output`` and discard an unfinished run with other arguments.
    resume : bool, default True
        Continue an unfinished run with the same arguments. With ``resume=False`` an
        unfinished run is an error unless ``overwrite=True`` (which discards it).
    progress : bool, default True
        Show a progress bar over MD steps.

    Returns
    -------
    Dataset
        ``n_frames`` frames with energies (eV) and forces (eV/Å), cell and pbc of the
        input. ``metadata`` records the sampling: method, temperature, time step,
        stride, seed, friction, equilibration, software versions and wall time.

    Raises
    ------
    FileExistsError
        If ``output`` exists and ``overwrite`` is False, or an unfinished run exists
        and ``resume`` is False (and ``overwrite`` is False).
    ValueError
        For invalid arguments, or an unfinished run started with other arguments.
    RuntimeError
        If the dynamics blow up: non-finite energies/forces or a kinetic temperature
        above :func:`runaway_temperature`. Nothing from the bad steps is written; the
        last checkpoint stays valid.
    """
    output = check_writable(output, overwrite)
    if output.suffix.lower() not in (".npz", ".extxyz", ".xyz"):
        raise ValueError(f"output {output} must end in .npz or .extxyz (the dataset format)")
    for what, value in (("n_frames", n_frames), ("stride", stride)):
        if int(value) != value or value < 1:
            raise ValueError(f"{what} must be a positive whole number, got {value}")
    if not (np.isfinite(temperature_K) and temperature_K > 0):
        raise ValueError(f"temperature_K must be a positive temperature in K, got {temperature_K}")
    if not (np.isfinite(friction_per_fs) and friction_per_fs > 0):
        raise ValueError(f"friction_per_fs must be positive (1/fs), got {friction_per_fs}")
    if not (np.isfinite(timestep_fs) and timestep_fs > 0):
        raise ValueError(f"timestep_fs must be a positive number of fs, got {timestep_fs}")
    if equilibration_steps is None:
        equilibration_steps = int(round(5.0 / (friction_per_fs * timestep_fs)))
    if int(equilibration_steps) != equilibration_steps or equilibration_steps < 0:
        raise ValueError(f"equilibration_steps must be a whole number >= 0, got {equilibration_steps}")
    n_frames, stride, equilibration_steps = int(n_frames), int(stride), int(equilibration_steps)

    start_atoms = atoms.copy()
    start_atoms.calc = None
    md_calc = _resolve_calculator(calculator, start_atoms)
    label_calc = None if label_calculator is None else _resolve_calculator(label_calculator, start_atoms)
    md_prov = calculator_provenance(md_calc)
    label_prov = None if label_calc is None else calculator_provenance(label_calc)
    signature = _signature(
        start_atoms, md_prov, label_prov, n_frames=n_frames, stride=stride,
        temperature_K=float(temperature_K), timestep_fs=float(timestep_fs),
        friction_per_fs=float(friction_per_fs), equilibration_steps=equilibration_steps,
        seed=int(seed),
    )

    work = _WorkFolder(output)
    n_atoms = len(start_atoms)
    record_len = 1 + 6 * n_atoms  # energy, positions, forces
    state = None
    if work.exists():
        if not resume and not overwrite:
            raise FileExistsError(
                f"an unfinished run exists in {work.path}; pass resume=True to continue it "
                "or overwrite=True to discard it"
            )
        if resume:
            state = work.load_state()
            saved = json.loads(str(state["signature"]))
            if saved != signature and overwrite:
                state = None  # a different run: overwrite=True discards it
            else:
                _check_same_run(saved, signature, work.path)
    if state is None:
        work.create()

    md_atoms = start_atoms.copy()
    md_atoms.calc = md_calc
    rng = np.random.default_rng(seed)
    if state is None:
        initialize_velocities(md_atoms, temperature_K, rng)
        step, frames_done, wall_before, sessions = 0, 0, 0.0, 1
    else:
        md_atoms.positions = state["positions"]
        md_atoms.set_momenta(state["momenta"], apply_constraint=False)
        rng.bit_generator.state = json.loads(str(state["rng_state"]))
        step, frames_done = int(state["step"]), int(state["frames_done"])
        wall_before, sessions = float(state["wall_time_s"]), int(state["sessions"]) + 1
        work.read_records(frames_done, record_len)  # validates and cuts an unfinished record
    dyn = make_integrator(md_atoms, "nvt", timestep_fs=timestep_fs, temperature_K=temperature_K,
                          friction_per_fs=friction_per_fs, rng=rng)
    threshold = runaway_temperature(temperature_K, _degrees_of_freedom(md_atoms))

    session_start = time.perf_counter()

    def checkpoint() -> None:
        work.save_state(
            positions=md_atoms.positions, momenta=md_atoms.get_momenta(),
            rng_state=json.dumps(rng.bit_generator.state), step=step, frames_done=frames_done,
            signature=json.dumps(signature),
            wall_time_s=wall_before + time.perf_counter() - session_start, sessions=sessions,
        )
        # Continue exactly as a resumed run would: from a calculator without history.
        md_calc.reset()

    total_steps = equilibration_steps + n_frames * stride
    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step",
               desc=f"MD {md_prov['level_of_theory']} {temperature_K:g} K")
    try:
        if state is None and equilibration_steps == 0:
            checkpoint()
        while frames_done < n_frames:
            _md_step(dyn, md_atoms, step, threshold, temperature_K)
            step += 1
            bar.update()
            if step < equilibration_steps or (step - equilibration_steps) % stride:
                continue
            if step > equilibration_steps:
                if label_calc is None:
                    energy = md_atoms.get_potential_energy()
                    forces = md_atoms.get_forces(apply_constraint=False)
                else:
                    energy, forces = _evaluate(label_calc, md_atoms)
                    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
                        raise RuntimeError(
                            f"the labelling method {label_prov['level_of_theory']} gave non-finite "
                            f"results at MD step {step}; nothing was written for this frame"
                        )
                work.append(np.concatenate([[energy], md_atoms.positions.ravel(), forces.ravel()]))
                frames_done += 1
                bar.set_postfix(frames=frames_done, T=f"{md_atoms.get_temperature():.0f} K")
            checkpoint()
    finally:
        bar.close()

    records = work.read_records(n_frames, record_len)
    wall = wall_before + time.perf_counter() - session_start
    level = (label_prov or md_prov)["level_of_theory"]
    provs = [md_prov] + ([label_prov] if label_prov else [])
    metadata = {
        "sampling": {
            "method": "Langevin molecular dynamics (ASE), NVT",
            "md_level_of_theory": md_prov["level_of_theory"],
            "label_level_of_theory": level,
            "md_calculator": md_prov,
            "label_calculator": label_prov,
            "temperature_K": float(temperature_K),
            "timestep_fs": float(timestep_fs),
            "friction_per_fs": float(friction_per_fs),
            "equilibration_steps": equilibration_steps,
            "stride": stride,
            "n_frames": n_frames,
            "seed": int(seed),
            "frame_md_steps": f"{equilibration_steps} + {stride} * (i + 1) for frame i",
            "wall_time_s": round(wall, 3),
            "sessions": sessions,
            "software": _software_versions(*provs),
        }
    }
    dataset = Dataset(
        numbers=start_atoms.numbers,
        positions=records[:, 1 : 1 + 3 * n_atoms].reshape(n_frames, n_atoms, 3),
        energies=records[:, 0],
        forces=records[:, 1 + 3 * n_atoms :].reshape(n_frames, n_atoms, 3),
        cell=start_atoms.cell.array if start_atoms.pbc.any() else None,
        pbc=start_atoms.pbc if start_atoms.pbc.any() else False,
        charge=int(start_atoms.info.get("charge", 0)),
        spin=int(start_atoms.info.get("spin", 0)),
        name=name or start_atoms.get_chemical_formula(),
        level_of_theory=level,
        metadata=metadata,
    )
    dataset.save(output, overwrite=overwrite)
    work.remove()
    return dataset


def _md_step(dyn, atoms: Atoms, step: int, threshold_K: float, temperature_K: float) -> None:
    """One MD step, refusing to go on from a state that has blown up."""
    try:
        dyn.step()
    except Exception as err:  # the calculator failed (e.g. an SCF that does not converge)
        raise RuntimeError(
            f"the calculator failed at MD step {step + 1}: {err}. The last checkpoint is intact; "
            "a smaller timestep_fs or a checked starting structure usually helps"
        ) from err
    forces = atoms.get_forces()
    energy = atoms.get_potential_energy()
    if not (np.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(atoms.positions))):
        raise RuntimeError(
            f"non-finite energy, forces or positions at MD step {step + 1}: the dynamics blew up "
            "and nothing from this step was written. Check the structure and calculator, or "
            "reduce timestep_fs"
        )
    temp = atoms.get_temperature()
    if temp > threshold_K:
        raise RuntimeError(
            f"the kinetic temperature ran away to {temp:.0f} K at MD step {step + 1} (target "
            f"{temperature_K:g} K, limit {threshold_K:.0f} K); nothing from this step was written. "
            "Reduce timestep_fs, or check the structure and calculator"
        )
