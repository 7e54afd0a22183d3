"""The quickstart job and ``mlffkit info``: what a new user runs first."""

import json

import pytest

from mlffkit.cli import main
from mlffkit.cli.info import collect
from mlffkit.quickstart import free_folder, run_quickstart


def test_free_folder_never_reuses_a_folder(tmp_path):
    base = tmp_path / "report"
    assert free_folder(base) == base
    base.mkdir()
    assert free_folder(base) == tmp_path / "report-2"
    (tmp_path / "report-2").mkdir()
    assert free_folder(base) == tmp_path / "report-3"


def test_quickstart_writes_a_report(tmp_path):
    pytest.importorskip("tblite")
    folder = run_quickstart(tmp_path / "qs", md_steps=20, progress=False)
    names = {p.name for p in folder.iterdir()}
    assert {"report.md", "summary.json", "dataset_overview.png", "md_energies.png",
            "md_nvt.extxyz", "md_nve.extxyz"} <= names
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["dataset"]["n_frames"] >= 1000  # the bundled ethanol set, not a stand-in
    assert summary["md"]["nvt"]["stable"] and summary["md"]["nve"]["stable"]
    # 20 steps of 0.5 fs of GFN2-xTB NVE: the total energy is conserved to well under 1 meV/atom
    assert summary["md"]["nve"]["max_deviation_meV_per_atom"] < 1.0
    assert "GFN2-xTB" in (folder / "report.md").read_text()


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
