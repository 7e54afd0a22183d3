"""``mlffkit md`` on the command line: structures from files and names, summary, files, exit codes."""

from __future__ import annotations

import ase.io
import pytest
from ase import Atoms
from ase.cluster import Icosahedron

from mlffkit.cli import main


@pytest.fixture
def cu13_file(tmp_path):
    path = tmp_path / "cu13.xyz"
    ase.io.write(path, Icosahedron("Cu", 2))
    return path


def test_nve_run_prints_summary_and_writes_trajectory(cu13_file, tmp_path, capsys):
    out = tmp_path / "traj.extxyz"
    rc = main(
        f"md {cu13_file} --method emt --ensemble nve --steps 40 --timestep 2 --temperature 200 "
        f"--interval 10 -o {out} --no-progress".split()
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "NVE MD of Cu13" in text and "EMT" in text
    assert "stable" in text and "UNSTABLE" not in text
    assert "drift" in text and "meV/atom/ps" in text
    assert "mean" in text and "initial 200 K" in text
    assert f"wrote 5 frames to {out}" in text
    assert len(ase.io.read(out, ":")) == 5


def test_existing_output_is_kept_unless_overwrite(cu13_file, tmp_path, capsys):
    out = tmp_path / "traj.extxyz"
    out.write_text("keep me")
    args = f"md {cu13_file} --method emt --steps 10 --timestep 2 -o {out} --no-progress".split()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main([*args, "--overwrite"]) == 0
    assert len(ase.io.read(out, ":")) == 2


def test_frame_of_a_multi_frame_file(tmp_path, capsys):
    path = tmp_path / "two.extxyz"
    ase.io.write(path, [Icosahedron("Cu", 2), Atoms("Cu2", positions=[[0, 0, 0], [2.3, 0, 0]])])
    assert main(f"md {path}@0 --method emt --steps 5 --timestep 2 --no-progress".split()) == 0
    assert "Cu13" in capsys.readouterr().out


def test_exploding_structure_exits_1_and_says_why(tmp_path, capsys):
    path = tmp_path / "squeezed.xyz"
    ase.io.write(path, Atoms("Cu2", positions=[[0, 0, 0], [1.2, 0, 0]]))  # far inside the core
    rc = main(
        f"md {path} --method emt --ensemble nve --temperature 0 --steps 200 --timestep 2 "
        "--no-progress".split()
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "UNSTABLE" in captured.out and "bond Cu0-Cu1 stretched" in captured.out
    assert "InstabilityWarning" not in captured.err  # said once, in the summary


@pytest.mark.parametrize(
    ("structure", "method", "message"),
    [
        ("no_such_thing", "emt", "ASE molecule name"),
        ("CH3CH2OH", "emt", "EMT"),  # EMT describes fcc metals only
        ("CH3CH2OH", "b3lyp-d4", "unknown reference method"),
    ],
)
def test_bad_input_is_one_clear_error(structure, method, message, capsys):
    assert main(["md", structure, "--method", method, "--steps", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlffkit md: error:") and message in err


@pytest.mark.reference
def test_molecule_by_name_with_gfn2(capsys):
    pytest.importorskip("tblite")
    assert main(["md", "CH3CH2OH", "--method", "gfn2", "--steps", "10", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "C2H6O" in text and "GFN2-xTB" in text and "stable" in text
