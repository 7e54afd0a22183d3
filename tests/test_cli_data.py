"""``mlffkit data ...`` through the real entry point, ``mlffkit.cli.main``."""

import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mlffkit.cli import main
from mlffkit.data import Split, load

SGDML_FILE = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"


def test_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["NAME", "KIND", "FRAMES"]
    for name in ("ethanol", "cu_vacancy", "md17_ethanol", "rmd17_aspirin", "md22_ac_ala3_nhme"):
        assert f"\n{name} " in out
    assert "555,092" in out


def test_inspect_reports_in_three_units(capsys):
    assert main(["data", "inspect", str(SGDML_FILE)]) == 0
    out = capsys.readouterr().out
    assert "24 frames of 9 atoms (H, C, O)" in out
    assert "read from kcal/mol and Ang" in out
    ds = load(SGDML_FILE)
    std = ds.energies.std()
    line = next(li for li in out.splitlines() if li.strip().startswith("energy std"))
    ev, mev, kcal = (float(x) for x in line.split()[-3:])
    assert ev == pytest.approx(std, abs=1e-5)
    assert mev == pytest.approx(std * 1e3, abs=0.01)
    assert kcal == pytest.approx(np.std(np.load(SGDML_FILE)["E"]), abs=1e-4)  # the file's unit


def test_unit_errors_are_one_clean_line(capsys):
    assert main(["data", "inspect", str(SGDML_FILE), "--energy-unit", "eV"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlffkit data: error:") and "kcal/mol" in err and "\n" not in err


def test_convert_and_overwrite(tmp_path, capsys):
    dst = tmp_path / "ethanol.extxyz"
    assert main(["data", "convert", str(SGDML_FILE), str(dst), "--index", "0:8"]) == 0
    assert "8 frames" in capsys.readouterr().out
    assert np.array_equal(load(dst).energies, load(SGDML_FILE, index="0:8").energies)
    assert main(["data", "convert", str(SGDML_FILE), str(dst)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "convert", str(SGDML_FILE), str(dst), "--overwrite"]) == 0
    assert len(load(dst)) == 24


def test_split(tmp_path, capsys):
    out = tmp_path / "split.json"
    args = [
        "data",
        "split",
        str(SGDML_FILE),
        "--train",
        "10",
        "--valid",
        "4",
        "--seed",
        "3",
        "--stratified",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    assert "10 train, 4 valid, 10 test" in capsys.readouterr().out
    split = Split.load(out)
    assert split.method == "stratified" and split.seed == 3
    train, valid, test = split.apply(load(SGDML_FILE))
    assert (len(train), len(valid), len(test)) == (10, 4, 10)
    assert main(args[:-2] + ["--train", "30", "-o", str(tmp_path / "x.json")]) == 2
    assert "exceeds the 24 frames" in capsys.readouterr().err


def test_download_offline_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFFKIT_CACHE", str(tmp_path))
    with socket.socket() as s:  # a port nobody listens on: the download fails at once
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/u.npz"
    assert main(["data", "download", "md17_uracil", "--url", url]) == 2
    err = capsys.readouterr().err
    assert url in err and str(tmp_path / "md17" / "md17_uracil.npz") in err
    assert main(["data", "download", "no_such_set"]) == 2
    assert "unknown dataset 'no_such_set'" in capsys.readouterr().err


def test_bare_data_command_prints_help(capsys):
    assert main(["data"]) == 0
    assert "inspect" in capsys.readouterr().out


def test_generate_subcommand_is_registered_when_available(monkeypatch, capsys):
    fake = types.ModuleType("mlffkit.cli.data_generate")

    def register_generate(actions):
        p = actions.add_parser("generate", help="label frames")
        p.add_argument("--n", type=int)
        p.set_defaults(func=lambda args: print(f"generate {args.n}") or 0)

    fake.register_generate = register_generate
    monkeypatch.setitem(sys.modules, "mlffkit.cli.data_generate", fake)
    assert main(["data", "generate", "--n", "3"]) == 0
    assert capsys.readouterr().out.strip() == "generate 3"
