"""``mlffkit data generate``: make a dataset by Langevin MD with a reference method.

Examples
--------
::

    mlffkit data generate --molecule CH3CH2OH --method gfn2 --temperature 500 \\
        --frames 1000 --stride 160 -o ethanol.npz
    mlffkit data generate --structure cu.extxyz --method emt --temperature 700 \\
        --timestep 2 --frames 500 --stride 40 -o cu.npz
    mlffkit data generate --molecule H2O --method gfn2 --label-method pyscf \\
        --basis def2-SVP --temperature 300 --frames 50 --stride 40 -o water_dft.npz

An interrupted run continues when the same command is run again.
"""

from __future__ import annotations

_METHODS = ("gfn2", "gfn1", "emt", "pyscf")


def register_generate(actions) -> None:
    """Add ``generate`` to the ``mlffkit data`` actions (``actions`` is its subparsers object)."""
    p = actions.add_parser(
        "generate",
        help="make a dataset: Langevin MD with a reference method (GFN2-xTB, EMT, DFT)",
        description="Run Langevin NVT dynamics, keep every STRIDE-th frame and label it. "
        "Interrupted runs resume when the same command is run again.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--molecule", metavar="NAME",
                     help="a molecule from ase.build.molecule, e.g. CH3CH2OH, H2O, C6H6")
    src.add_argument("--structure", metavar="FILE",
                     help="a structure file ASE reads (first frame; its cell and pbc are kept)")
    p.add_argument("--method", default="gfn2", choices=_METHODS,
                   help="method driving the dynamics (default gfn2)")
    p.add_argument("--label-method", default=None, choices=_METHODS,
                   help="label the kept frames with this method instead (e.g. pyscf)")
    p.add_argument("--xc", default="PBE", help="functional for pyscf (default PBE)")
    p.add_argument("--basis", default="def2-SVP", help="basis set for pyscf (default def2-SVP)")
    p.add_argument("--charge", type=int, default=None, help="total charge (default 0)")
    p.add_argument("--spin", type=int, default=None, help="unpaired electrons, 2S (default 0)")
    p.add_argument("--temperature", type=float, required=True, help="thermostat temperature, K")
    p.add_argument("--timestep", type=float, default=0.5, help="time step, fs (default 0.5)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    p.add_argument("--equilibration", type=int, default=None,
                   help="steps before the first frame (default: 5 / (friction * timestep))")
    p.add_argument("--stride", type=int, required=True, help="MD steps between kept frames")
    p.add_argument("--frames", type=int, required=True, help="number of frames to keep")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--name", default=None, help="dataset name (default: the formula)")
    p.add_argument("-o", "--output", required=True, help="dataset to write (.npz or .extxyz)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT and discard an unfinished run with other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


def _structure(args):
    if args.molecule:
        from ase.build import molecule
        from ase.collections import g2

        try:
            atoms = molecule(args.molecule)
        except KeyError:
            raise ValueError(
                f"ASE knows no molecule {args.molecule!r}; use a name from ase.collections.g2 "
                f"(e.g. {', '.join(sorted(g2.names)[:8])}, ...) or give --structure FILE"
            ) from None
    else:
        from pathlib import Path

        from ase.io import read

        if not Path(args.structure).is_file():
            raise FileNotFoundError(f"structure file {args.structure} does not exist")
        atoms = read(args.structure, index=0)
    for key in ("charge", "spin"):
        if getattr(args, key) is not None:
            atoms.info[key] = getattr(args, key)
    return atoms


def cmd_generate(args) -> int:
    from mlffkit.reference import get_calculator
    from mlffkit.sampling import sample

    atoms = _structure(args)

    def calculator(method):
        extra = {"xc": args.xc, "basis": args.basis} if method == "pyscf" else {}
        return get_calculator(method, atoms, **extra)

    try:
        md_calc = calculator(args.method)
        label_calc = calculator(args.label_method) if args.label_method else None
    except ImportError as err:  # a missing engine is something the user can fix
        raise RuntimeError(str(err)) from None
    ds = sample(
        atoms, md_calc, label_calculator=label_calc, n_frames=args.frames, stride=args.stride,
        temperature_K=args.temperature, timestep_fs=args.timestep, friction_per_fs=args.friction,
        equilibration_steps=args.equilibration, seed=args.seed, name=args.name,
        output=args.output, overwrite=args.overwrite, progress=not args.no_progress,
    )
    print(ds.summary())
    print(f"wrote {args.output}")
    return 0
