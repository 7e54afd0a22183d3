"""Readers and writers: sGDML/MD17 npz (incl. a file sgdml wrote), rMD17, ASE formats,
units, exact round trips, and sgdml training on the npz files mlffkit writes."""

import json
import logging
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlffkit import units
from mlffkit.data import Dataset, load, save
from mlffkit.data.formats import convert

FIXTURES = Path(__file__).parent / "fixtures"
SGDML_FILE = FIXTURES / "sgdml_ethanol_kcal.npz"  # written with sgdml's own code (kcal/mol, Å)


@pytest.fixture(scope="module")
def sgdml_raw():
    with np.load(SGDML_FILE) as f:
        return {k: f[k] for k in f.files}


def _emt_images(n=4, repeat=(1, 1, 1), seed=0):
    """Rattled, sheared fcc Cu cells labelled with EMT: a real periodic dataset whose
    triclinic cell is not symmetric (so rows and columns cannot be confused)."""
    images = []
    for i in range(n):
        at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
        shear = np.array([[1.0, 0.0, 0.0], [0.12, 1.0, 0.0], [0.05, -0.08, 1.0]])
        at.set_cell(at.cell.array @ shear, scale_atoms=True)
        at.rattle(0.05, seed=seed + i)
        at.calc = EMT()
        at.get_forces()
        images.append(at)
    return images


def _assert_same(a: Dataset, b: Dataset):
    """Bit-for-bit equality of everything a Dataset holds."""
    assert a.fingerprint() == b.fingerprint()
    assert np.array_equal(a.n_atoms, b.n_atoms)
    assert np.array_equal(a.flat_numbers, b.flat_numbers)
    assert np.array_equal(a.flat_positions, b.flat_positions)
    for x, y in ((a.energies, b.energies), (a.flat_forces, b.flat_forces), (a.cell, b.cell)):
        assert (x is None and y is None) or np.array_equal(x, y)
    assert np.array_equal(a.pbc, b.pbc)
    assert np.array_equal(a.charge, b.charge) and np.array_equal(a.spin, b.spin)
    assert (a.name, a.level_of_theory) == (b.name, b.level_of_theory)
    assert a.metadata == b.metadata
    assert np.array_equal(a.source_indices, b.source_indices)
    assert a.source_fingerprint == b.source_fingerprint


# ------------------------------------------------------------------ sGDML npz
def test_reads_a_file_written_by_sgdml_and_converts_kcal_per_mol(sgdml_raw):
    ds = load(SGDML_FILE)
    assert (ds.name, ds.level_of_theory, len(ds)) == ("ethanol", "GFN2-xTB", 24)
    assert np.array_equal(ds.numbers, sgdml_raw["z"])
    assert np.array_equal(ds.positions, sgdml_raw["R"])
    assert np.allclose(ds.energies, sgdml_raw["E"] * units.KCAL_PER_MOL, rtol=1e-15, atol=0)
    assert np.allclose(ds.forces, sgdml_raw["F"] * units.KCAL_PER_MOL, rtol=1e-15, atol=0)
    assert ds.metadata["source_units"] == {"energy": "kcal/mol", "length": "Ang"}
    # the same unit spelled another way is no contradiction
    assert np.array_equal(load(SGDML_FILE, energy_unit="kcal/mol").energies, ds.energies)


def test_units_that_contradict_the_file_are_an_error():
    with pytest.raises(ValueError, match="says its energies are in kcal/mol, but energy_unit='eV'"):
        load(SGDML_FILE, energy_unit="eV")
    with pytest.raises(ValueError, match="says its lengths are in Ang, but length_unit='bohr'"):
        load(SGDML_FILE, length_unit="bohr")


def test_npz_without_units_needs_them_named(tmp_path, sgdml_raw):
    path = tmp_path / "bare.npz"
    np.savez(path, **{k: sgdml_raw[k] for k in ("R", "z", "E", "F")})
    with pytest.raises(ValueError, match=r"does not record its energy unit; pass energy_unit="):
        load(path)
    with pytest.raises(ValueError, match=r"does not record its length unit; pass length_unit="):
        load(path, energy_unit="kcal/mol")
    ds = load(path, energy_unit="Ha", length_unit="bohr")
    assert np.allclose(ds.energies, sgdml_raw["E"] * units.HARTREE, rtol=1e-15)
    assert np.allclose(ds.positions, sgdml_raw["R"] * units.BOHR, rtol=1e-15)
    assert np.allclose(ds.forces, sgdml_raw["F"] * units.HARTREE / units.BOHR, rtol=1e-15)
    assert ds.name == "bare"


def test_column_energies_and_unknown_unit_strings(tmp_path, sgdml_raw):
    path = tmp_path / "odd.npz"
    np.savez(
        path,
        R=sgdml_raw["R"],
        z=sgdml_raw["z"],
        E=sgdml_raw["E"][:, None],
        F=sgdml_raw["F"],
        e_unit="kcal mol-1",
        r_unit="Ang",
    )
    with pytest.raises(ValueError, match="records its energy unit as 'kcal mol-1'"):
        load(path)
    ds = load(path, energy_unit="kcal/mol")  # the caller says what the spelling means
    assert ds.energies.shape == (24,)


def test_pickled_npz_is_refused(tmp_path, sgdml_raw):
    path = tmp_path / "pickled.npz"
    np.savez(path, R=sgdml_raw["R"], z=sgdml_raw["z"], extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="does not unpickle"):
        load(path, energy_unit="eV", length_unit="Ang")


def test_npz_of_unknown_layout(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match=r"has arrays \['x'\]; mlffkit reads sGDML npz"):
        load(path)


# ------------------------------------------------------------------ rMD17
def _write_rmd17(path, raw):
    """The rMD17 layout, as in rmd17/npz_data/rmd17_*.npz (kcal/mol and Å)."""
    np.savez(
        path,
        nuclear_charges=raw["z"],
        coords=raw["R"],
        energies=raw["E"],
        forces=raw["F"],
        old_indices=np.arange(len(raw["E"])) * 7,
        old_energies=raw["E"] + 1.5,
        old_forces=raw["F"] * 0.5,
    )


def test_rmd17_layout_and_its_old_labels(tmp_path, sgdml_raw):
    path = tmp_path / "rmd17_ethanol.npz"
    _write_rmd17(path, sgdml_raw)
    ds = load(path)
    assert ds.level_of_theory == "PBE/def2-SVP" and ds.name == "rmd17_ethanol"
    assert np.allclose(ds.energies, sgdml_raw["E"] * units.KCAL_PER_MOL, rtol=1e-15)
    old = load(path, labels="old")
    assert np.allclose(old.energies, (sgdml_raw["E"] + 1.5) * units.KCAL_PER_MOL, rtol=1e-15)
    assert np.allclose(old.forces, sgdml_raw["F"] * 0.5 * units.KCAL_PER_MOL, rtol=1e-15)
    assert np.array_equal(old.positions, ds.positions)
    assert "MD17" in old.level_of_theory and old.metadata["labels"] == "old"
    with pytest.raises(ValueError, match=r"rMD17 format\) says its energies are in kcal/mol"):
        load(path, energy_unit="eV")
    with pytest.raises(ValueError, match="labels must be 'revised' or 'old'"):
        load(path, labels="new")
    with pytest.raises(ValueError, match="labels= applies to rMD17 npz files only"):
        load(SGDML_FILE, labels="old")


# ------------------------------------------------------------------ files ASE writes
@pytest.mark.parametrize("suffix", ["extxyz", "traj", "db"])
def test_reads_files_ase_writes(tmp_path, suffix):
    images = _emt_images()
    path = tmp_path / f"cu.{suffix}"
    ase.io.write(path, images)
    ds = load(path)
    assert len(ds) == 4 and ds.is_periodic and ds.name == "cu"
    # ASE's extxyz writer rounds per-atom columns to 8 decimals; traj and db are exact
    tol = 1e-8 if suffix == "extxyz" else 0.0
    assert np.allclose(ds.positions, [at.positions for at in images], rtol=0, atol=tol)
    assert np.allclose(ds.forces, [at.get_forces() for at in images], rtol=0, atol=tol)
    assert np.array_equal(ds.energies, [at.get_potential_energy() for at in images])
    assert np.allclose(ds.cell, [at.cell.array for at in images], rtol=0, atol=1e-15)


def test_ase_file_in_other_units_can_be_declared(tmp_path):
    images = _emt_images(n=2)
    path = tmp_path / "cu_kcal.extxyz"
    ase.io.write(path, images)
    ds = load(path, energy_unit="kcal/mol")  # e.g. an extxyz exported by sgdml
    assert ds.energies[0] == pytest.approx(images[0].get_potential_energy() * units.KCAL_PER_MOL)


def test_unknown_suffix_asks_for_a_format(tmp_path):
    path = tmp_path / "data.weird"
    path.write_text("nothing\n")
    with pytest.raises(ValueError, match="pass format="):
        load(path)


# ------------------------------------------------------------------ exact round trips
def _molecular():
    with np.load(SGDML_FILE) as raw:
        raw = {k: raw[k] for k in ("z", "R", "E", "F")}
    return Dataset(
        numbers=raw["z"],
        positions=raw["R"],
        energies=raw["E"],
        forces=raw["F"],
        energy_unit="kcal/mol",
        name="ethanol",
        level_of_theory="GFN2-xTB",
        charge=np.arange(24) % 2,
        spin=np.arange(24) % 2,
        metadata={"temperature_K": 500.0, "steps": [1, 2, 3], "note": "MD at 500 K"},
    )


def _periodic():
    return Dataset.from_atoms(_emt_images(), name="cu", level_of_theory="EMT")


def _ragged():
    images = _emt_images(n=2) + _emt_images(n=2, repeat=(2, 1, 1), seed=5)
    return Dataset.from_atoms(images, name="cu mixed", level_of_theory="EMT")


def _no_labels():
    return Dataset(
        numbers=["O", "H", "H"], positions=np.random.default_rng(3).normal(size=(3, 3, 3))
    )


def _awkward_metadata():
    ds = _molecular()
    ds.metadata.update(note='say "hi"\\n back\\slash, Å=1 {x}', nested={"k": [1.5, "v"]})
    return ds


@pytest.mark.parametrize("suffix", ["npz", "extxyz", "xyz"])
@pytest.mark.parametrize("make", [_molecular, _periodic, _ragged, _no_labels, _awkward_metadata])
def test_round_trip_is_exact(tmp_path, suffix, make):
    ds = make()
    path = save(ds, tmp_path / f"data.{suffix}")
    _assert_same(load(path), ds)


@pytest.mark.parametrize("suffix", ["npz", "extxyz"])
def test_round_trip_keeps_subset_provenance(tmp_path, suffix):
    ds = _molecular()
    sub = ds[[3, 9, 17]]
    back = load(save(sub, tmp_path / f"sub.{suffix}"))
    _assert_same(back, sub)
    assert back.source_indices.tolist() == [3, 9, 17]
    assert back.source_fingerprint == ds.fingerprint()


def test_index_selects_frames_and_remembers_them(tmp_path):
    full = load(SGDML_FILE)
    every_fifth = load(SGDML_FILE, index="::5")
    assert every_fifth.source_indices.tolist() == [0, 5, 10, 15, 20]
    assert every_fifth.source_fingerprint == full.fingerprint()
    assert np.array_equal(load(SGDML_FILE, index=-1).positions[0], full.positions[-1])
    assert load(SGDML_FILE, index=[2, 4]).source_indices.tolist() == [2, 4]
    with pytest.raises(ValueError, match="index 'every other' is not understood"):
        load(SGDML_FILE, index="every other")


def test_extxyz_is_standard_and_full_precision(tmp_path):
    ds = _periodic()
    path = save(ds, tmp_path / "cu.extxyz")
    text = path.read_text()
    assert "Properties=species:S:1:pos:R:3:forces:R:3" in text and "Lattice=" in text
    assert 'mlffkit="_JSON {' in text  # the header is readable JSON when it can be
    images = ase.io.read(path, ":")  # ASE alone reads everything back exactly
    assert np.array_equal([at.get_potential_energy() for at in images], ds.energies)
    assert np.array_equal([at.get_forces() for at in images], ds.forces)
    assert np.array_equal([at.positions for at in images], ds.positions)
    assert np.array_equal([at.cell.array for at in images], ds.cell)


def test_overwrite_protection(tmp_path):
    ds = _no_labels()
    path = save(ds, tmp_path / "x.npz")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        save(ds, path)
    save(_molecular(), path, overwrite=True)
    assert len(load(path)) == 24
    with pytest.raises(ValueError, match="use .npz"):
        save(ds, tmp_path / "x.csv")


def test_convert_writes_what_load_reads(tmp_path):
    ds = convert(SGDML_FILE, tmp_path / "ethanol.extxyz", index="0:6")
    back = load(tmp_path / "ethanol.extxyz")
    _assert_same(back, ds)
    assert back.metadata["source_units"]["energy"] == "kcal/mol"  # where the numbers came from


# ------------------------------------------------------------------ sGDML compatibility
def test_saved_npz_is_an_sgdml_dataset(tmp_path):
    sgdml_io = pytest.importorskip("sgdml.utils.io")
    ds = _molecular()
    path = save(ds, tmp_path / "ethanol.npz")
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    assert data["type"].item() == "d" and data["e_unit"].item() == "eV"
    assert data["r_unit"].item() == "Ang" and data["theory"].item() == "GFN2-xTB"
    assert data["R"].shape == (24, 9, 3) and data["F"].shape == (24, 9, 3)
    assert data["md5"].item() == sgdml_io.dataset_md5(data)
    assert json.loads(data["mlffkit"].item())["layout"] == "sgdml"


def test_ragged_or_unlabelled_sets_use_the_flat_layout(tmp_path):
    for make in (_ragged, _no_labels):
        path = save(make(), tmp_path / f"{make.__name__}.npz")
        with np.load(path) as f:
            assert "R" not in f.files and "n_atoms" in f.files
    with pytest.raises(ValueError, match="do not all have the same atoms.*extxyz"):
        save(_ragged(), tmp_path / "strict.npz", format="sgdml")


def test_lattice_follows_sgdmls_column_convention(tmp_path):
    """sgdml wraps difference vectors with the lattice vectors as columns; in a sheared
    cell only the right orientation takes a lattice translation back to zero."""
    desc = pytest.importorskip("sgdml.utils.desc")
    ds = _periodic()
    cell = ds.cell[0]
    assert not np.allclose(cell, cell.T)
    with np.load(save(ds, tmp_path / "cu.npz")) as f:
        lattice = f["lattice"]
    assert np.array_equal(lattice, cell.T)
    delta = np.array([0.11, -0.07, 0.09])
    d = 2 * cell[0] - cell[1] + cell[2] + delta  # a lattice translation plus a short vector
    wrapped = desc._pbc_diff(d[None].copy(), (lattice, np.linalg.inv(lattice)))[0]
    assert np.allclose(wrapped, delta, atol=1e-12)
    wrong = desc._pbc_diff(d[None].copy(), (cell, np.linalg.inv(cell)))[0]
    assert not np.allclose(wrong, delta, atol=1e-3)


@pytest.fixture()
def sgdml_trainer(monkeypatch):
    """One GDMLTrain (sgdml allows a single instance per process) and GDMLPredict."""
    train = pytest.importorskip("sgdml.train")
    predict = pytest.importorskip("sgdml.predict")
    monkeypatch.setattr(np, "in1d", np.isin, raising=False)  # sgdml 1.0.3 predates NumPy 2
    logging.disable(logging.WARNING)  # sgdml warns about tiny training sets
    trainer = train.GDMLTrain(max_processes=1)
    yield trainer, predict.GDMLPredict
    del trainer
    logging.disable(logging.NOTSET)


def _sgdml_fit(path, trainer, GDMLPredict):
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    np.random.seed(0)  # noqa: NPY002 (sgdml draws its frames with the global generator)
    task = trainer.create_task(data, 10, data, 6, sig=10, lam=1e-10)
    model = trainer.train(task)
    _, forces = GDMLPredict(model, max_processes=1).predict(data["R"].reshape(len(data["R"]), -1))
    return task, forces.reshape(data["F"].shape), model


def test_sgdml_trains_on_our_npz_exactly_as_on_its_own(tmp_path, sgdml_trainer):
    """The eV file mlffkit writes gives sgdml the same model as sgdml's own kcal/mol file."""
    ours = save(load(SGDML_FILE), tmp_path / "ethanol_ev.npz")
    task_ref, f_ref, _ = _sgdml_fit(SGDML_FILE, *sgdml_trainer)
    task, f_ours, model = _sgdml_fit(ours, *sgdml_trainer)
    assert np.array_equal(task["idxs_train"], task_ref["idxs_train"])
    assert model["e_unit"].item() == "eV"
    assert np.allclose(f_ours, f_ref * units.KCAL_PER_MOL, rtol=0, atol=1e-6)
    # and it learnt the force field: held-out forces are far better than predicting zero
    valid = task["idxs_valid"]
    ref = load(ours).forces[valid]
    assert np.abs(f_ours[valid] - ref).mean() < 0.75 * np.abs(ref).mean()


# ------------------------------------------------------------------ named datasets
def test_missing_bundled_file_says_where_it_should_be(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFFKIT_DATA", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"bundled dataset 'ethanol' should be at .*ethanol_gfn2.npz"
    ):
        load("ethanol")
    save(_molecular(), tmp_path / "ethanol_gfn2.npz")
    assert len(load("Ethanol")) == 24  # names ignore case


def test_unknown_names_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing file nor a known dataset"):
        load("md17_ethanoll")
    with pytest.raises(ValueError, match="is a folder"):
        load(tmp_path)
