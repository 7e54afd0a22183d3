"""Regenerate mlffkit's bundled datasets and their data cards.

    python data/make_datasets.py                  # all three (about two CPU hours)
    python data/make_datasets.py ethanol aspirin  # some of them
    python data/make_datasets.py --correlation ethanol   # measure the stride (pilot run)
    python data/make_datasets.py --cards-only     # rewrite the data cards of existing files

Each dataset is made by :func:`mlffkit.sampling.sample` (Langevin NVT, seeded), so a
rerun with the same software versions reproduces it; an interrupted run continues where
it stopped when started again. Run with ``OMP_NUM_THREADS=1`` for bit-reproducible
tblite results. Each dataset gets a data card ``data/<name>.md`` written from its
provenance record.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import NeighborList, natural_cutoffs
from ase.optimize import BFGS

from mlffkit.data import Dataset, load
from mlffkit.fileio import atomic_write_text
from mlffkit.md.integrators import initialize_velocities, make_integrator
from mlffkit.reference import get_calculator
from mlffkit.sampling import sample

DATA = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- structures
def _place(a, b, c, bond: float, angle: float, dihedral: float) -> np.ndarray:
    """Position of atom d bonded to c, from bond length c–d (Å), angle b–c–d and dihedral a–b–c–d (°).

    The natural extension reference frame (NeRF) construction of a Z-matrix row.
    """
    a, b, c = (np.asarray(x, dtype=float) for x in (a, b, c))
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    theta, phi = np.radians(angle), np.radians(dihedral)
    d_local = bond * np.array([-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
    return c + d_local[0] * bc + d_local[1] * m + d_local[2] * n


#: Covalent bonds of aspirin (2-acetoxybenzoic acid) in the atom order of :func:`aspirin`.
ASPIRIN_BONDS = sorted([
    (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5),  # benzene ring C1..C6
    (0, 6), (6, 7), (6, 8), (8, 16),  # C1-C(=O)OH: C7, O8 (C=O), O9, H
    (1, 9), (9, 10), (10, 11), (10, 12),  # C2-O-C(=O)-CH3: O10, C11, O12, C13
    (12, 13), (12, 14), (12, 15),  # methyl H
    (2, 17), (3, 18), (4, 19), (5, 20),  # ring H on C3..C6
])


def aspirin() -> Atoms:
    """Aspirin, C9H8O4, from standard bond lengths and angles (not yet relaxed).

    Ring in the xy plane; carboxylic acid coplanar with the ring (syn O=C–O–H); the
    acetoxy group turned ~90° out of the ring plane with the ester in its Z (cis)
    form, as in the crystal structure. Atom order: ring C1–C6 (C1 bears the acid, C2
    the ester), C7, O8 (=O), O9 (–OH), O10 (ester), C11, O12 (=O), C13 (methyl),
    3 methyl H, the acid H, 4 ring H (on C3–C6).
    """
    ring = [1.39 * np.array([np.cos(t), np.sin(t), 0.0]) for t in np.radians(np.arange(0, 360, 60))]
    p = list(ring)
    p.append(_place(ring[2], ring[1], ring[0], 1.48, 122.0, 180.0))  # 6 C7 on C1
    p.append(_place(ring[1], ring[0], p[6], 1.21, 123.0, 0.0))  # 7 O8, C=O toward the ester side
    p.append(_place(ring[1], ring[0], p[6], 1.34, 113.0, 180.0))  # 8 O9, OH away from it
    p.append(_place(ring[5], ring[0], ring[1], 1.39, 120.0, 180.0))  # 9 O10 on C2
    p.append(_place(ring[0], ring[1], p[9], 1.36, 118.0, 90.0))  # 10 C11
    p.append(_place(ring[1], p[9], p[10], 1.20, 123.0, 0.0))  # 11 O12 (Z ester)
    p.append(_place(ring[1], p[9], p[10], 1.50, 110.0, 180.0))  # 12 C13
    for dih in (0.0, 120.0, 240.0):  # 13-15 methyl H
        p.append(_place(p[11], p[10], p[12], 1.09, 109.5, dih))
    p.append(_place(p[7], p[6], p[8], 0.97, 106.0, 0.0))  # 16 acid H, syn to C=O
    for i in (2, 3, 4, 5):  # 17-20 ring H, radial
        p.append(ring[i] * (1.0 + 1.08 / 1.39))
    return Atoms("C6COOOCOC" + "H" * 8, positions=np.array(p))


def bonds(atoms: Atoms) -> list[tuple[int, int]]:
    """Bonded pairs: closer than 1.2 times the sum of their covalent radii (ASE's natural cutoffs)."""
    nl = NeighborList(natural_cutoffs(atoms, mult=1.2), skin=0.0, self_interaction=False,
                      bothways=False)
    nl.update(atoms)
    return sorted((min(i, j), max(i, j)) for i in range(len(atoms)) for j in nl.get_neighbors(i)[0])


def relaxed_aspirin(fmax: float = 0.005) -> Atoms:
    """Aspirin relaxed with BFGS under GFN2-xTB; the bonds are checked before and after."""
    atoms = aspirin()
    if bonds(atoms) != ASPIRIN_BONDS:
        raise RuntimeError(f"the built aspirin has wrong bonds: {bonds(atoms)}")
    atoms.calc = get_calculator("gfn2")
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=1000)
    found = bonds(atoms)
    if found != ASPIRIN_BONDS:
        missing = sorted(set(ASPIRIN_BONDS) - set(found))
        extra = sorted(set(found) - set(ASPIRIN_BONDS))
        raise RuntimeError(f"relaxed aspirin changed its bonds: lost {missing}, gained {extra}")
    atoms.calc = None
    return atoms


def copper_vacancy() -> Atoms:
    """fcc Cu, 2×2×2 conventional cells (32 sites, a = 3.61 Å) with one vacancy: 31 atoms."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    del atoms[0]
    return atoms


# --------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """How one bundled dataset is made."""

    file: str
    name: str
    build: object  # () -> Atoms
    structure: str
    method: str
    n_frames: int
    stride: int
    temperature_K: float
    timestep_fs: float
    equilibration_steps: int
    seed: int
    pilot_steps: int  # length of the run that measures the correlation times
    use: str


RECIPES = {
    "ethanol": Recipe(
        file="ethanol_gfn2.npz", name="ethanol", build=lambda: molecule("CH3CH2OH"),
        structure="ase.build.molecule('CH3CH2OH'), unrelaxed (equilibration takes care of it)",
        method="gfn2", n_frames=5000, stride=160, temperature_K=500.0, timestep_fs=0.5,
        equilibration_steps=2000, seed=2024, pilot_steps=20000,
        use="Teaching and testing: kernel models (GDML/sGDML-style), descriptors, learning "
        "curves, MD with the learned model. The molecule and the temperature follow MD17's "
        "ethanol, but the labels are GFN2-xTB, not DFT, so numbers are not comparable with "
        "MD17/rMD17 results. Known limitation of the reference: GFN2-xTB misorders the H–O–C–C "
        "torsion minima (relative to anti: gauche −66 meV, cis −11 meV; PBE/def2-SVP: −14 and "
        "+53 meV, measured in tutorials/01_reference_data.ipynb), so the set is dominated by "
        "gauche frames, and a model trained on it inherits that.",
    ),
    "aspirin": Recipe(
        file="aspirin_gfn2.npz", name="aspirin", build=relaxed_aspirin,
        structure="built from standard bond lengths/angles in data/make_datasets.py, relaxed with "
        "BFGS under GFN2-xTB (fmax 0.005 eV/Å), bonds checked with ase.neighborlist",
        method="gfn2", n_frames=2000, stride=25, temperature_K=500.0, timestep_fs=1.0,
        equilibration_steps=1000, seed=2024, pilot_steps=10000,
        use="A larger, floppier molecule (21 atoms, two rotatable groups) for learning curves "
        "and for comparing descriptors and models beyond ethanol. GFN2-xTB labels; not "
        "comparable with MD17's DFT aspirin.",
    ),
    "cu_vacancy": Recipe(
        file="cu_vacancy_emt.npz", name="cu_vacancy", build=copper_vacancy,
        structure="fcc Cu (a = 3.61 Å), 2×2×2 conventional cells = 32 sites minus one: 31 atoms, "
        "periodic cubic cell of 7.22 Å",
        method="emt", n_frames=1000, stride=80, temperature_K=700.0, timestep_fs=2.0,
        equilibration_steps=1000, seed=2024, pilot_steps=10000,
        use="Periodic systems: minimum-image descriptors and periodic kernel models (BIGDML-"
        "style) and vibrations around a point defect. The cell is small (7.22 Å edge) so that kernel models stay "
        "cheap: any cutoff must stay below half the edge, 3.61 Å, between the first and "
        "second neighbour shells (2.55 and 3.61 Å). EMT is a model potential; use it for "
        "methods, not for copper's physics.",
    ),
}


# --------------------------------------------------------------------------- correlation
def _autocorrelation(x: np.ndarray, n_lags: int) -> np.ndarray:
    """Normalised autocorrelation of a time series ``(n_steps, ...)``, summed over the other axes."""
    x = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(0)
    f = np.fft.rfft(x, n=2 * len(x), axis=0)
    c = np.fft.irfft(f * np.conj(f), axis=0)[:n_lags].sum(1) / (len(x) - np.arange(n_lags))
    return c / c[0]


def correlation_times(recipe: Recipe, atoms: Atoms, n_steps: int) -> dict:
    """Pilot run at the recipe's conditions: how fast velocities and potential energy decorrelate.

    Returns times in fs: the integrated autocorrelation time of the potential energy
    (summed to the first zero crossing) and, for both quantities, the lag after which
    the |autocorrelation| stays below 0.1.
    """
    atoms = atoms.copy()
    atoms.calc = get_calculator(recipe.method, atoms)
    rng = np.random.default_rng(recipe.seed + 1)
    initialize_velocities(atoms, recipe.temperature_K, rng)
    dyn = make_integrator(atoms, "nvt", timestep_fs=recipe.timestep_fs,
                          temperature_K=recipe.temperature_K, rng=rng)
    for _ in range(recipe.equilibration_steps):
        dyn.step()
    velocities, energies, temperatures = [], [], []
    for _ in range(n_steps):
        dyn.step()
        velocities.append(atoms.get_velocities())
        energies.append(atoms.get_potential_energy())
        temperatures.append(atoms.get_temperature())
    n_lags = n_steps // 4
    dt = recipe.timestep_fs

    c_v = _autocorrelation(np.array(velocities), n_lags)
    c_e = _autocorrelation(np.array(energies), n_lags)
    # The velocity autocorrelation oscillates: report when its envelope has decayed.
    v_envelope = np.maximum.accumulate(np.abs(c_v)[::-1])[::-1]
    first_zero = int(np.argmax(c_e < 0)) or n_lags
    return {
        "pilot_steps": n_steps,
        "mean_temperature_K": float(np.mean(temperatures)),
        "energy_tau_int_fs": float((0.5 + c_e[1:first_zero].sum()) * dt),
        "energy_first_below_0.1_fs": float(np.argmax(c_e < 0.1) * dt),
        "velocity_below_0.1_fs": float(np.argmax(v_envelope < 0.1) * dt),
    }


# --------------------------------------------------------------------------- data cards
def data_card(recipe: Recipe, ds: Dataset, corr: dict, size_mb: float) -> str:
    s = ds.metadata["sampling"]
    d = ds.describe()
    e_consecutive = float(np.corrcoef(ds.energies[:-1], ds.energies[1:])[0, 1])
    stride_fs = recipe.stride * recipe.timestep_fs
    versions = ", ".join(f"{k} {v}" for k, v in s["software"].items())
    cell = ""
    if ds.cell is not None:
        # positions are not wrapped into the cell; the crystal as a whole drifts (the centre
        # of mass is free), so excursions are measured from the drifted starting sites
        moved = ds.positions - recipe.build().positions
        hop = np.linalg.norm(moved - moved.mean(axis=1, keepdims=True), axis=-1).max()
        cell = (
            f"| cell | {np.round(ds.cell[0].diagonal(), 3).tolist()} Å (orthorhombic), pbc "
            f"{ds.pbc[0].tolist()}; positions not wrapped |\n"
            f"| defect | largest displacement of any atom from its starting site: {hop:.2f} Å"
            f"{' (no atom hopped)' if hop < 1.0 else ''} |\n"
        )
    ratio = stride_fs / corr["energy_tau_int_fs"]
    if ratio >= 1.5:
        stride_text = (
            f"The potential energy is the slowest of the two; the stride ({stride_fs:g} fs) is "
            f"{ratio:.1f} times its integrated correlation time, so consecutive frames are close "
            "to statistically independent."
        )
    else:
        n_eff = d["n_frames"] * stride_fs / (2 * corr["energy_tau_int_fs"])
        stride_text = (
            f"The potential energy is the slowest of the two. The stride ({stride_fs:g} fs) is only "
            f"{ratio:.1f} times its integrated correlation time, to keep the cost of generating "
            "the file bounded: consecutive frames are correlated, and the set holds about "
            f"{n_eff:.0f} statistically independent samples (N·stride / 2τ). Take every second or "
            "third frame where independence matters (e.g. for test sets)."
        )
    tblite_note = ""
    if recipe.method == "gfn2":
        params = s["md_calculator"]["parameters"]
        tblite_note = (
            f"tblite settings: accuracy {params['accuracy']}, electronic temperature "
            f"{params['electronic_temperature']} K, every SCF started from the atomic-density guess "
            "(`mlffkit.reference.GeometryOnlyTBLite`), so a label depends on the geometry only.\n"
        )
    return f"""# {recipe.file}: {d['n_frames']} frames of {ds.formula}, {ds.level_of_theory}

| | |
|---|---|
| file | `data/{recipe.file}` ({size_mb:.1f} MB, sGDML-style npz: R, z, E, F{', lattice' if ds.cell is not None else ''}) |
| name / level_of_theory | `{ds.name}` / `{ds.level_of_theory}` |
| atoms | {d['n_atoms']} ({', '.join(d['elements'])}) |
{cell}| structure | {recipe.structure} |
| units | Å, eV, eV/Å |
| sampling | Langevin NVT (ASE), {s['temperature_K']:g} K, time step {s['timestep_fs']:g} fs, friction {s['friction_per_fs']:g} fs⁻¹, on all 3N degrees of freedom (the centre of mass diffuses freely) |
| equilibration | {s['equilibration_steps']} steps ({s['equilibration_steps'] * recipe.timestep_fs:g} fs) before the first frame |
| stride | every {s['stride']} steps ({stride_fs:g} fs); frame i is MD step {s['equilibration_steps']} + {s['stride']}·(i + 1) |
| seed | {s['seed']} |
| energy | mean {d['energy_mean_eV']:.4f} eV, std {d['energy_std_eV'] * 1e3:.1f} meV |
| forces | mean force norm {d['force_norm_mean_eV_A']:.3f} eV/Å, largest {d['force_norm_max_eV_A']:.3f} eV/Å, component std {d['force_component_std_eV_A']:.3f} eV/Å |
| wall time | {s['wall_time_s'] / 60:.1f} min of sampling, one CPU core (OMP_NUM_THREADS=1), {s['sessions']} session(s) |
| software | {versions} |

{tblite_note}
## Why this stride

A pilot run of {corr['pilot_steps']} steps at the same conditions (`python data/make_datasets.py
--correlation {recipe.name}`) measured (mean kinetic temperature {corr['mean_temperature_K']:.0f} K):

- velocity autocorrelation: its envelope stays below 0.1 after {corr['velocity_below_0.1_fs']:.0f} fs;
- potential-energy autocorrelation: integrated correlation time {corr['energy_tau_int_fs']:.0f} fs
  (summed to the first zero crossing); C(t) first falls below 0.1 at
  {corr['energy_first_below_0.1_fs']:.0f} fs.

{stride_text} Check in the data: the correlation of the energies of consecutive frames is
{e_consecutive:.2f}.

## Intended use

{recipe.use}

## How to regenerate

```bash
OMP_NUM_THREADS=1 python data/make_datasets.py {recipe.name} --overwrite
```

Langevin dynamics is seeded, so the same software versions reproduce the file; an
interrupted run continues where it stopped when the command is run again (without
`--overwrite`).
"""


# --------------------------------------------------------------------------- main
def make(recipe: Recipe, *, overwrite: bool, progress: bool, pilot_steps: int | None = None,
         card_only: bool = False) -> Dataset:
    """Sample the dataset (or, with ``card_only``, load it) and write its data card."""
    atoms = recipe.build()
    start = time.perf_counter()
    corr = correlation_times(recipe, atoms, pilot_steps or recipe.pilot_steps)
    print(f"{recipe.name}: pilot {time.perf_counter() - start:.0f} s: {json.dumps(corr)}", flush=True)
    output = DATA / recipe.file
    if card_only:
        ds = load(output)
    else:
        ds = sample(
            atoms, recipe.method, n_frames=recipe.n_frames, stride=recipe.stride,
            temperature_K=recipe.temperature_K, timestep_fs=recipe.timestep_fs,
            equilibration_steps=recipe.equilibration_steps, seed=recipe.seed, name=recipe.name,
            output=output, overwrite=overwrite, resume=not overwrite, progress=progress,
        )
    size_mb = output.stat().st_size / 1e6
    card = DATA / f"{Path(recipe.file).stem}.md"
    atomic_write_text(card, data_card(recipe, ds, corr, size_mb), overwrite=True)
    print(f"{recipe.name}: {len(ds)} frames, {size_mb:.1f} MB, "
          f"{ds.metadata['sampling']['wall_time_s'] / 60:.1f} min sampling", flush=True)
    return ds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"datasets to make: {', '.join(RECIPES)} (default: all)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files and discard unfinished runs")
    parser.add_argument("--correlation", action="store_true",
                        help="only run the pilot that measures correlation times, and print them")
    parser.add_argument("--cards-only", action="store_true",
                        help="rewrite the data cards of existing files (runs the pilot again)")
    parser.add_argument("--pilot-steps", type=int, default=None,
                        help="steps of the pilot run (default: the recipe's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {', '.join(RECIPES)}")
    for name in args.names or list(RECIPES):
        recipe = RECIPES[name]
        if args.correlation:
            steps = args.pilot_steps or recipe.pilot_steps
            print(name, json.dumps(correlation_times(recipe, recipe.build(), steps)))
        else:
            make(recipe, overwrite=args.overwrite, progress=not args.no_progress,
                 pilot_steps=args.pilot_steps, card_only=args.cards_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
