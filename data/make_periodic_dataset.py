"""Regenerate the bundled Pt-adatom-on-Cu(100) slab dataset and its data card.

    python data/make_periodic_dataset.py                 # sample (resumable) and write the card
    python data/make_periodic_dataset.py --correlation   # only the pilot run that sets the stride
    python data/make_periodic_dataset.py --cards-only    # rewrite the data card of the file

A second periodic material for BIGDML-style models, next to ``cu_vacancy`` (bulk with a
point defect): a surface with an adsorbate, periodic in two directions only. It reuses
the recipe machinery of ``data/make_datasets.py`` (sampling with
:func:`mlffkit.sampling.sample`, the pilot run that measures correlation times, the
data card), so that the two files are made and documented the same way.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from ase import Atoms
from ase.build import add_adsorbate, fcc100
from ase.optimize import BFGS
from make_datasets import DATA, Recipe, correlation_times, make

from mlffkit.data import Dataset
from mlffkit.descriptors.periodic import MinimumImage
from mlffkit.fileio import atomic_write_text
from mlffkit.reference import get_calculator

#: the four Cu atoms of the hollow site under the adatom, and the adatom, in atom order
HOLLOW, ADATOM = [27, 28, 30, 31], 36


def pt_adatom_cu100() -> Atoms:
    """A Pt adatom in a hollow site of a 4-layer Cu(100) slab, 3×3 surface cell: Cu36Pt.

    Cu lattice constant 3.61 Å (surface cell 7.66 Å × 7.66 Å), 6 Å of vacuum on either
    side along z (not periodic: ``pbc = (True, True, False)``), relaxed with BFGS under
    EMT to 0.01 eV/Å. The hollow site keeps the slab's fourfold axis: the structure has
    the point symmetry C4v (8 operations), and no lattice translation maps it onto
    itself because there is one adatom per cell.
    """
    slab = fcc100("Cu", size=(3, 3, 4), a=3.61, vacuum=6.0)
    add_adsorbate(slab, "Pt", height=1.8, position="hollow")
    slab.center(vacuum=6.0, axis=2)
    slab.calc = get_calculator("emt", slab)
    BFGS(slab, logfile=None).run(fmax=0.01, steps=1000)
    slab.calc = None
    return slab


RECIPE = Recipe(
    file="pt_cu100_emt.npz",
    name="pt_cu100",
    build=pt_adatom_cu100,
    structure="Pt adatom in a hollow site of a 4-layer Cu(100) slab (ase.build.fcc100, a = 3.61 Å, "
    "3×3 surface cell of 7.66 Å, 36 Cu + 1 Pt = 37 atoms), periodic in x and y only, 6 Å of "
    "vacuum above and below (the z length of the cell is not a period), relaxed with BFGS "
    "under EMT; no atom is fixed, both surfaces move",
    method="emt",
    n_frames=800,
    stride=140,
    temperature_K=600.0,
    timestep_fs=2.0,
    equilibration_steps=1000,
    seed=2024,
    pilot_steps=10000,
    use="Periodic models of a surface with an adsorbate (BIGDML-style minimum-image "
    "descriptors with pbc in two directions, crystal symmetries of a slab: the point group "
    "C4v of the hollow site, 8 operations). The 3×3 surface cell keeps every first-neighbour "
    "shell well inside half the 7.66 Å period. EMT is a model potential (its Pt–Cu mixing "
    "is only qualitative); use the set for methods, not for the physics of Pt on copper.",
)


def adatom_report(ds: Dataset) -> str:
    """Where the adatom went: its lateral offset from the centre of its hollow site per frame."""
    mic = MinimumImage(ds.cell[0], ds.pbc[0])
    to_hollow = mic.shortest_vectors(
        torch.as_tensor(ds.positions[:, HOLLOW] - ds.positions[:, ADATOM : ADATOM + 1])
    ).numpy()
    offset = np.linalg.norm(to_hollow.mean(axis=1)[:, :2], axis=1)
    away = np.flatnonzero(offset > 0.6)
    bridge = 3.61 / np.sqrt(2) / 2
    return (
        "\n## The adatom\n\n"
        f"The Pt atom stays in its hollow site: its lateral distance from the centre of the four "
        f"Cu atoms below it is {np.median(offset):.2f} Å in the median frame. In {len(away)} of "
        f"the {len(ds)} frames ({', '.join(map(str, away)) or 'none'}) it is more than 0.6 Å off, "
        f"at most {offset.max():.2f} Å (the bridge site is {bridge:.2f} Å away): hop attempts "
        "that went back. The largest displacement above is the thermal motion of the free "
        "surfaces and of the adatom, not a hop.\n"
    )


def fix_card(ds: Dataset) -> None:
    """Adapt the card written by make_datasets.py to this script and to a slab's file layout."""
    card = DATA / "pt_cu100_emt.md"
    text = card.read_text()
    text = text.replace(
        "sGDML-style npz: R, z, E, F, lattice",
        "mlffkit's flat npz layout: positions, forces, energies, cell, pbc; sGDML's layout has "
        "no slabs",
    )
    text = text.replace(
        "`python data/make_datasets.py\n--correlation pt_cu100`",
        "`python data/make_periodic_dataset.py\n--correlation`",
    )
    text = text.replace(
        "python data/make_datasets.py pt_cu100 --overwrite",
        "python data/make_periodic_dataset.py --overwrite",
    )
    text = text.replace("\n## Intended use", adatom_report(ds) + "\n## Intended use")
    atomic_write_text(card, text, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the file and discard an unfinished run"
    )
    parser.add_argument(
        "--correlation", action="store_true", help="only run the pilot run and print its times"
    )
    parser.add_argument(
        "--cards-only", action="store_true", help="rewrite the data card of the existing file"
    )
    parser.add_argument("--pilot-steps", type=int, default=None, help="steps of the pilot run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.correlation:
        steps = args.pilot_steps or RECIPE.pilot_steps
        print(RECIPE.name, json.dumps(correlation_times(RECIPE, RECIPE.build(), steps)))
        return 0
    ds = make(
        RECIPE,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        pilot_steps=args.pilot_steps,
        card_only=args.cards_only,
    )
    fix_card(ds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
