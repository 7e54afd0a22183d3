"""Dataset: validation of bad input, unit conversion at the door, subsets and provenance."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlffkit import units
from mlffkit.data import Dataset, as_atomic_numbers


def _water(n_frames=4, seed=0):
    rng = np.random.default_rng(seed)
    pos = molecule("H2O").positions + 0.05 * rng.normal(size=(n_frames, 3, 3))
    return dict(
        numbers=[8, 1, 1],
        positions=pos,
        energies=rng.normal(size=n_frames),
        forces=rng.normal(size=(n_frames, 3, 3)),
    )


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(positions=np.zeros((4, 3, 2))), "positions has shape (4, 3, 2)"),
        (dict(forces=np.zeros((4, 2, 3))), "forces has shape (4, 2, 3)"),
        (dict(energies=np.zeros(3)), "energies has shape (3,); expected (4,)"),
        (dict(numbers=[8, 1]), "frame 0: numbers has 2 atoms but positions has 3"),
        (dict(numbers=["O", "H", "Hx"]), "unknown element symbol 'Hx'"),
        (dict(numbers=[8, 1, 0]), "unknown element: atomic number 0"),
        (dict(numbers=[8, 1, 119]), "atomic number 119"),
        (dict(cell=np.eye(2)), "cell has shape (2, 2)"),
        (dict(cell=np.zeros((3, 3))), "zero volume"),
        (dict(pbc=True), "pbc is set but no cell was given"),
        (dict(spin=-1), "spin is the number of unpaired electrons"),
    ],
)
def test_bad_input_is_named(change, message):
    kwargs = {**_water(), **change}
    with pytest.raises(ValueError) as err:
        Dataset(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("field", ["positions", "forces", "energies"])
def test_non_finite_values_are_located(field, bad):
    kwargs = _water()
    arr = np.array(kwargs[field], dtype=float)
    arr.flat[2] = bad
    kwargs[field] = arr
    with pytest.raises(ValueError, match=f"{field} has 1 non-finite value"):
        Dataset(**kwargs)


def test_missing_forces_is_a_clear_error():
    kwargs = _water()
    del kwargs["forces"]
    ds = Dataset(**kwargs, name="water")
    assert not ds.has_forces
    with pytest.raises(ValueError, match="dataset water has no forces"):
        ds.forces  # noqa: B018
    with pytest.raises(ValueError, match="has no forces"):
        ds.require("forces")


def test_element_symbols_and_numbers_agree():
    assert as_atomic_numbers(["Cu", "H", "O"]).tolist() == [29, 1, 8]
    with pytest.raises(ValueError, match="must be whole atomic numbers"):
        as_atomic_numbers([1.5, 6.0])


# ------------------------------------------------------------------ units at the door
def test_units_are_converted_once_at_the_door():
    kw = _water()
    ds = Dataset(**kw, energy_unit="kcal/mol", length_unit="bohr")
    assert np.allclose(ds.energies, kw["energies"] * units.KCAL_PER_MOL, rtol=1e-15)
    assert np.allclose(ds.positions, kw["positions"] * units.BOHR, rtol=1e-15)
    assert np.allclose(ds.forces, kw["forces"] * units.KCAL_PER_MOL / units.BOHR, rtol=1e-15)
    assert ds.metadata["source_units"] == {"energy": "kcal/mol", "length": "bohr"}
    with pytest.raises(ValueError, match="unknown energy unit 'kcal'"):
        Dataset(**kw, energy_unit="kcal")


def test_sgdml_style_column_energies_are_flattened():
    kw = _water()
    ds = Dataset(**{**kw, "energies": kw["energies"][:, None]})
    assert ds.energies.shape == (4,)


# ------------------------------------------------------------------ subsets and provenance
def test_subset_of_subset_points_at_the_original_frames():
    ds = Dataset(**_water(n_frames=10))
    sub = ds[2:8]
    subsub = sub[[0, 3, 5]]
    assert sub.source_indices.tolist() == [2, 3, 4, 5, 6, 7]
    assert subsub.source_indices.tolist() == [2, 5, 7]
    assert subsub.source_fingerprint == ds.fingerprint() == sub.source_fingerprint
    assert np.array_equal(subsub.positions, ds.positions[[2, 5, 7]])
    assert np.array_equal(subsub.energies, ds.energies[[2, 5, 7]])
    with pytest.raises(ValueError, match="the subset is empty"):
        ds.subset([])
    with pytest.raises(IndexError, match="out of range"):
        ds.subset([10])


def test_frame_hashes_find_the_same_geometry_whatever_its_order():
    ds = Dataset(**_water(n_frames=6))
    shuffled = ds[[5, 3, 1]]
    assert set(shuffled.frame_hashes()) <= set(ds.frame_hashes())
    moved = Dataset(numbers=[8, 1, 1], positions=ds.positions[:1] + 1e-3)
    assert not set(moved.frame_hashes()) & set(ds.frame_hashes())


# ------------------------------------------------------------------ from ASE
def test_from_atoms_takes_calculator_results_and_keeps_cells():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    images = []
    for seed in range(3):
        at = atoms.copy()
        at.rattle(0.05, seed=seed)
        at.calc = EMT()
        at.get_forces()
        images.append(at)
    ds = Dataset.from_atoms(images, name="cu", level_of_theory="EMT")
    assert ds.is_periodic and ds.cell.shape == (3, 3, 3)
    assert np.allclose(ds.energies, [at.get_potential_energy() for at in images])
    assert np.allclose(ds.forces[1], images[1].get_forces())
    # a molecule in a box keeps its box (pbc False) so a round trip does not lose it
    boxed = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=False)
    boxed.calc = SinglePointCalculator(boxed, energy=-1.0, forces=np.zeros((2, 3)))
    one = Dataset.from_atoms([boxed])
    assert not one.is_periodic and np.allclose(one.cell[0], np.eye(3) * 5)


def test_from_atoms_rejects_partial_labels_and_missing_cells():
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    b = a.copy()
    a.calc = SinglePointCalculator(a, energy=-1.0)
    with pytest.raises(ValueError, match="structure 1 has no energy while others do"):
        Dataset.from_atoms([a, b])
    periodic = bulk("Cu")
    loose = Atoms("Cu", pbc=True)
    with pytest.raises(ValueError, match="structure 1 has no cell while others are periodic"):
        Dataset.from_atoms([periodic, loose])


def test_from_atoms_converts_units():
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.4]])
    a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.ones((2, 3)))
    ds = Dataset.from_atoms([a], energy_unit="Ha", length_unit="bohr")
    assert ds.energies[0] == pytest.approx(-units.HARTREE)
    assert ds.positions[0, 1, 2] == pytest.approx(1.4 * units.BOHR)
    assert ds.forces[0, 0, 0] == pytest.approx(units.HARTREE / units.BOHR)


def test_concatenate_refuses_mixed_levels_of_theory():
    a = Dataset(**_water(), level_of_theory="GFN2-xTB")
    b = Dataset(**_water(seed=1), level_of_theory="PBE")
    with pytest.raises(ValueError, match="different levels of theory"):
        Dataset.concatenate([a, b])
    both = Dataset.concatenate([a, Dataset(**_water(seed=1), level_of_theory="GFN2-xTB")])
    assert len(both) == 8


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    from mlffkit.fileio import atomic_write_text

    path = atomic_write_text(tmp_path / "note.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
