"""The quickstart job and ``mlffkit info``: what a new user runs first."""

import json

import ase.io
import numpy as np
import pytest

from mlffkit.cli import main
from mlffkit.cli.info import collect
from mlffkit.data import Split, load
from mlffkit.evaluation import evaluate
from mlffkit.models import load_model
from mlffkit.quickstart import SIGMA_GRID, free_folder, run_quickstart
from mlffkit.units import KCAL_PER_MOL


def test_free_folder_never_reuses_a_folder(tmp_path):
    base = tmp_path / "report"
    assert free_folder(base) == base
    base.mkdir()
    assert free_folder(base) == tmp_path / "report-2"
    (tmp_path / "report-2").mkdir()
    assert free_folder(base) == tmp_path / "report-3"


@pytest.fixture(scope="module")
def quickstart_folder(tmp_path_factory):
    pytest.importorskip("tblite")
    folder = tmp_path_factory.mktemp("quickstart") / "qs"
    return run_quickstart(folder, md_steps=20, n_train=20, n_test=30, progress=False)


def test_quickstart_writes_a_report(quickstart_folder):
    folder = quickstart_folder
    names = {p.name for p in folder.iterdir()}
    assert {
        "report.md",
        "summary.json",
        "dataset_overview.png",
        "md_energies.png",
        "md_nvt.extxyz",
        "md_nve.extxyz",
    } <= names
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["dataset"]["n_frames"] >= 1000  # the bundled ethanol set, not a stand-in
    assert summary["md"]["nvt"]["stable"] and summary["md"]["nve"]["stable"]
    # 20 steps of 0.5 fs of GFN2-xTB NVE: the total energy is conserved to well under 1 meV/atom
    assert summary["md"]["nve"]["max_deviation_meV_per_atom"] < 1.0
    assert "GFN2-xTB" in (folder / "report.md").read_text()


def test_quickstart_trains_and_tests_sgdml_on_held_out_frames(quickstart_folder):
    folder = quickstart_folder
    assert {"sgdml_model.npz", "sgdml_split.json", "parity.png", "sigma_curve.png"} <= {
        p.name for p in folder.iterdir()
    }
    info = json.loads((folder / "summary.json").read_text())["model"]
    assert (info["n_train"], info["n_test"]) == (20, 30)
    # the sigma kept is the one with the lowest validation force error
    assert info["sigma_grid"] == list(SIGMA_GRID)
    assert info["sigma"] == SIGMA_GRID[int(np.argmin(info["valid_force_mae_meV_A"]))]

    model = load_model(folder / "sgdml_model.npz")
    split = Split.load(folder / "sgdml_split.json")
    train, valid, test = split.apply(load("ethanol"))
    assert np.array_equal(model.training_.source_indices, split.train)
    assert (len(train), len(valid), len(test)) == (20, info["n_valid"], 30)
    # the reported errors are the saved model's on the split's test frames (which it never saw)
    report = evaluate(model, test)
    assert info["test"]["force_mae_meV_A"] == pytest.approx(report.force_mae * 1e3)
    assert info["test"]["energy_mae_kcal_mol"] == pytest.approx(
        report.to_dict()["energy_mae_kcal_mol"]
    )
    text = (folder / "report.md").read_text()
    row = next(li for li in text.splitlines() if li.startswith("| forces"))
    assert (
        f"{report.force_mae * 1e3:.2f}" in row and f"{report.force_mae / KCAL_PER_MOL:.3f}" in row
    )
    assert "![parity](parity.png)" in text and "![sigma](sigma_curve.png)" in text


def test_quickstart_runs_md_with_the_model_and_compares_energies(quickstart_folder):
    folder = quickstart_folder
    assert {"sgdml_md_nvt.extxyz", "sgdml_md_energies.png", "md_energy_distributions.png"} <= {
        p.name for p in folder.iterdir()
    }
    summary = json.loads((folder / "summary.json").read_text())
    md = summary["model_md"]
    assert md["steps_completed"] == 20 and md["stable"]
    # the trajectory's energies are the model's: the MD really ran on the sGDML calculator
    # (to the precision of the positions in the extxyz file)
    frames = ase.io.read(folder / "sgdml_md_nvt.extxyz", ":")
    assert len(frames) == 5  # step 0 and every 5 steps
    energies, forces = load_model(folder / "sgdml_model.npz").predict(frames)
    np.testing.assert_allclose([a.get_potential_energy() for a in frames], energies, atol=1e-6)
    np.testing.assert_allclose([a.get_forces() for a in frames], forces, atol=1e-5)
    # same start as the reference NVT run, so the first energies differ only by the model error
    reference = ase.io.read(folder / "md_nvt.extxyz", 0)
    assert np.allclose(reference.positions, frames[0].positions)
    ref_stats = summary["md"]["nvt"]["potential_energy"]
    shift = (md["potential_energy"]["mean_eV"] - ref_stats["mean_eV"]) * 1e3
    assert md["mean_shift_vs_reference_meV"] == pytest.approx(shift)
    assert (
        "![energy distributions](md_energy_distributions.png)" in (folder / "report.md").read_text()
    )


def test_quickstart_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        run_quickstart(tmp_path, md_steps=2, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_info_reports_versions_devices_and_engines(capsys):
    info = collect()
    assert info["packages"]["torch"] and info["packages"]["ase"]
    assert "ase-emt" in info["engines"]  # EMT comes with ASE, always present
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "reference engines:" in out and "gpu" in out and "torch" in out
