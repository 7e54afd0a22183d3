"""``mlffkit md``: run molecular dynamics with a reference method and report its stability.

Exit status: 0 for a stable run, 1 when the stability monitor stopped it, 2 for bad input.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import ase.io
from ase import Atoms
from ase.build import molecule
from ase.collections import g2
from ase.io.formats import UnknownFileTypeError

from mlffkit.md import ENSEMBLES, InstabilityWarning, run_md

_STRUCTURE_HELP = (
    "a structure file ASE reads (the last frame; FILE@INDEX picks another), an ASE molecule "
    "name such as CH3CH2OH, H2O or C6H6, or a frame of a bundled dataset as NAME:INDEX "
    "(ethanol:0)"
)


def read_structure(spec: str) -> Atoms:
    """The structure named by ``spec``: a file, ``FILE@INDEX``, an ASE molecule name or ``DATASET:INDEX``.

    Raises
    ------
    ValueError
        When ``spec`` is none of these, or the file's format is unknown.
    """
    file_part = spec.rpartition("@")[0]
    if Path(spec).exists() or (file_part and Path(file_part).exists()):
        # ase.io.read understands FILE@INDEX itself
        try:
            return ase.io.read(spec)
        except UnknownFileTypeError as err:
            raise ValueError(
                f"cannot tell the format of {spec!r} ({err}); use a common extension such as "
                ".xyz, .extxyz, .traj, .pdb or .cif"
            ) from None
    name, _, index = spec.rpartition(":")
    if name and index.lstrip("-").isdigit():
        from mlffkit.data import load

        return load(name)[int(index)]
    if spec in g2.names:
        return molecule(spec)
    raise ValueError(
        f"{spec!r} is not an existing file, an ASE molecule name (e.g. CH3CH2OH, H2O, C6H6; "
        "see ase.collections.g2.names) or a dataset frame NAME:INDEX (e.g. ethanol:0)"
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "md",
        help="run molecular dynamics with a reference method",
        description=(
            "Run NVT (Langevin) or NVE (velocity Verlet) molecular dynamics with a reference "
            "method, stop if the run blows up, and print a summary (stability, mean temperature, "
            "energy drift for NVE). Exit status 1 when the run was unstable."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("structure", metavar="STRUCTURE", help=_STRUCTURE_HELP)
    p.add_argument(
        "--method", default="gfn2", help="reference method: gfn2, gfn1, emt (fcc metals) or pyscf"
    )
    p.add_argument(
        "--ensemble", choices=ENSEMBLES, default="nvt", help="thermostatted (nvt) or not (nve)"
    )
    p.add_argument("--steps", type=int, default=1000, help="number of MD steps")
    p.add_argument("--timestep", type=float, default=0.5, help="time step, fs")
    p.add_argument(
        "--temperature",
        type=float,
        default=300.0,
        help="thermostat target and initial-velocity temperature, K",
    )
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (nvt)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the velocities and thermostat noise"
    )
    p.add_argument("--interval", type=int, default=10, help="record a frame every INTERVAL steps")
    p.add_argument(
        "--keep-velocities",
        action="store_true",
        help="start from the momenta stored with the structure instead of drawing new ones",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="trajectory file to write (.extxyz or .traj)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mlffkit.reference import get_calculator

    atoms = read_structure(args.structure)
    calc = get_calculator(args.method, atoms)
    with warnings.catch_warnings():
        # the summary below reports an instability; the warning would say it twice
        warnings.simplefilter("ignore", InstabilityWarning)
        result = run_md(
            atoms,
            calc,
            ensemble=args.ensemble,
            steps=args.steps,
            timestep_fs=args.timestep,
            temperature_K=args.temperature,
            friction_per_fs=args.friction,
            seed=args.seed,
            init_velocities=not args.keep_velocities,
            trajectory=args.output,
            interval=args.interval,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    print(result.summary())
    if result.trajectory is not None:
        print(f"wrote {result.n_frames} frames to {result.trajectory}")
    return 0 if result.stable else 1
