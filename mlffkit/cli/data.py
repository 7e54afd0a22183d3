"""``mlffkit data``: list, inspect, convert, split and download datasets.

Examples
--------
::

    mlffkit data list
    mlffkit data inspect md17_ethanol
    mlffkit data convert md17_ethanol.npz ethanol.extxyz --energy-unit kcal/mol --length-unit Ang
    mlffkit data split ethanol --train 1000 --valid 500 --seed 0 --stratified -o split.json
    mlffkit data download rmd17_aspirin
"""

from __future__ import annotations

import argparse

import numpy as np

from mlffkit import units


def register(sub) -> None:
    """Add the ``data`` command and its actions to the top-level subparsers."""
    parser = sub.add_parser(
        "data",
        help="list, inspect, convert, split and download datasets",
        description="Datasets: everything is converted to eV and Å when read.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _print_help(parser))

    p = actions.add_parser("list", help="table of the bundled and downloadable datasets")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("inspect", help="frames, atoms, elements, energy and force statistics")
    p.add_argument("source", metavar="NAME_OR_PATH")
    _add_load_options(p)
    p.set_defaults(func=cmd_inspect)

    p = actions.add_parser("convert", help="convert a dataset file (units converted to eV and Å)")
    p.add_argument("source", metavar="SRC", help="input file or dataset name")
    p.add_argument("dest", metavar="DST", help="output .npz (sGDML-compatible) or .extxyz")
    _add_load_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.set_defaults(func=cmd_convert)

    p = actions.add_parser("split", help="write a reproducible train/valid/test split (JSON)")
    p.add_argument("source", metavar="NAME_OR_PATH")
    p.add_argument("--train", type=int, required=True, help="number of training frames")
    p.add_argument("--valid", type=int, default=0, help="number of validation frames (default 0)")
    p.add_argument(
        "--test", type=int, default=None, help="number of test frames (default: the rest)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--stratified", action="store_true", help="stratify every set by energy")
    p.add_argument("-o", "--output", required=True, help="split file to write (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    _add_load_options(p)
    p.set_defaults(func=cmd_split)

    p = actions.add_parser("download", help="download a public dataset into the cache")
    p.add_argument("name", metavar="NAME", help="e.g. md17_ethanol, rmd17_aspirin, md22_dha")
    p.add_argument("--url", default=None, help="download from this mirror instead")
    p.set_defaults(func=cmd_download)

    _register_generate(actions)


def _register_generate(actions) -> None:
    """Add ``mlffkit data generate`` when its module is installed."""
    try:
        from mlffkit.cli.data_generate import register_generate
    except ModuleNotFoundError as err:
        if err.name != "mlffkit.cli.data_generate":
            raise  # the module exists but is broken: show that, do not hide the command
        return
    register_generate(actions)


def _print_help(parser) -> int:
    parser.print_help()
    return 0


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--energy-unit",
        default=None,
        help=f"energy unit of a file that does not record it ({', '.join(units.ENERGY_UNITS)})",
    )
    p.add_argument(
        "--length-unit",
        default=None,
        help=f"length unit of a file that does not record it ({', '.join(units.LENGTH_UNITS)})",
    )
    p.add_argument("--format", default=None, help="input format (default: from the file)")
    p.add_argument(
        "--index", default=":", help="frames to read, e.g. '::10' or '0:1000' (default all)"
    )
    p.add_argument(
        "--labels",
        default=None,
        choices=("revised", "old"),
        help="rMD17 files: revised (default) or the original MD17 labels",
    )


def _load(args):
    from mlffkit.data import load

    return load(
        args.source,
        energy_unit=args.energy_unit,
        length_unit=args.length_unit,
        format=args.format,
        index=args.index,
        labels=args.labels,
    )


def cmd_list(args) -> int:
    from mlffkit.data import registry

    rows = []
    for e in registry.entries():
        meta = registry.info(e.name)  # bundled sets: sizes read from the file when it is there
        n_frames, n_atoms = meta["n_frames"], meta["n_atoms"]
        frames = f"{n_frames:,}" if n_frames else "-"
        atoms = str(n_atoms) if n_atoms else "-"
        rows.append((e.name, e.kind, frames, atoms, e.level_of_theory, e.description))
    head = ("NAME", "KIND", "FRAMES", "ATOMS", "LEVEL OF THEORY", "DESCRIPTION")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    for r in [head, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i != 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r[:5], widths, strict=True))
            )
            + "  "
            + r[5]
        )
    print(
        "\nBundled sets load offline; the others download once into the cache "
        "(mlffkit data download NAME)."
    )
    return 0


def _stats_table(ds) -> list[str]:
    """Energy and force statistics in eV, meV and kcal/mol (forces per Å)."""
    rows = []
    if ds.energies is not None:
        e = ds.energies
        rows += [("energy std", e.std()), ("energy range (max - min)", e.max() - e.min())]
    if ds.has_forces:
        f = ds.flat_forces
        norm = np.linalg.norm(f, axis=1)
        rows += [
            ("force component std /Å", f.std()),
            ("mean |F| /Å", norm.mean()),
            ("max |F| /Å", norm.max()),
        ]
    if not rows:
        return ["  no energies or forces"]
    out = [f"  {'':<26}{'eV':>12}{'meV':>12}{'kcal/mol':>12}"]
    for label, value in rows:
        out.append(
            f"  {label:<26}{value:>12.5f}{units.to_mev(value):>12.2f}"
            f"{units.to_kcal_mol(value):>12.4f}"
        )
    return out


def cmd_inspect(args) -> int:
    ds = _load(args)
    print(ds.summary())
    src = ds.metadata.get("source_units")
    if src:
        print(f"  read from {src.get('energy')} and {src.get('length')}; stored in eV and Å")
    if ds.energies is not None:
        print(
            f"  energy mean {ds.energies.mean():.6f} eV = "
            f"{units.to_kcal_mol(ds.energies.mean()):.4f} kcal/mol"
        )
    print("\n".join(_stats_table(ds)))
    print(f"  fingerprint {ds.fingerprint()}")
    return 0


def cmd_convert(args) -> int:
    from mlffkit.data import save

    ds = _load(args)
    save(ds, args.dest, overwrite=args.overwrite)
    print(f"wrote {args.dest}: {len(ds)} frames in eV and Å")
    return 0


def cmd_split(args) -> int:
    from mlffkit.data import random_split, stratified_split

    ds = _load(args)
    make = stratified_split if args.stratified else random_split
    split = make(ds, n_train=args.train, n_valid=args.valid, n_test=args.test, seed=args.seed)
    split.save(args.output, overwrite=args.overwrite)
    print(
        f"wrote {args.output}: {split.method} split of {ds.name or args.source} ({len(ds)} frames): "
        f"{split.train.size} train, {split.valid.size} valid, {split.test.size} test, "
        f"seed {split.seed}"
    )
    return 0


def cmd_download(args) -> int:
    from mlffkit.data.download import fetch

    path = fetch(args.name, url=args.url)
    print(f"{args.name}: {path}")
    return 0
