"""``mlffkit train`` and ``mlffkit evaluate`` through the real entry point, ``mlffkit.cli.main``."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from mlffkit.cli import main
from mlffkit.cli.train import parse_sigma_grid, split_path
from mlffkit.data import Split, check_disjoint, load
from mlffkit.evaluation import evaluate
from mlffkit.models import GDML, KRR, load_model

DATA = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"  # 24 frames, GFN2-xTB


def _train(tmp_path, *extra):
    out = tmp_path / "model.npz"
    args = ["train", str(DATA), "-o", str(out), "--no-progress", *extra]
    return main(args), out


def _printed(text: str, row: str, unit: str) -> float:
    """The first number before ``unit`` on the report line starting with ``row``."""
    line = next(li for li in text.splitlines() if li.startswith(row))
    return float(re.search(rf"([-\d.]+) {re.escape(unit)}", line).group(1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """sGDML trained with sigma chosen on a validation set; the CLI's output kept."""
    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "ethanol.npz"
    args = ["train", str(DATA), "--n-train", "12", "--n-valid", "6", "--sigma-grid", "2,5,10"]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rc = main([*args, "-o", str(out), "--seed", "3", "--no-progress"])
    return rc, out, buffer.getvalue()


def test_train_chooses_sigma_tests_and_saves_model_and_split(trained):
    rc, out, text = trained
    assert rc == 0
    model = load_model(out)
    assert isinstance(model, GDML) and model.n_train_ == 12
    assert model.permutations == "auto"  # sgdml: symmetries searched in the training frames
    assert f"{len(model.permutations_)} symmetries" in text
    split = Split.load(split_path(out))
    assert split_path(out).name == "ethanol.split.json"
    assert (split.train.size, split.valid.size, split.test.size, split.seed) == (12, 6, 6, 3)
    ds = load(DATA)
    train, valid, test = split.apply(ds)
    assert np.array_equal(model.training_.source_indices, split.train)
    check_disjoint(train, test)
    check_disjoint(valid, test)

    # the sigma kept is the one with the lowest validation force MAE in the printed curve
    rows = [
        li.split() for li in text.splitlines() if re.match(r"\s+\d+(\.\d+)?\s+[\d.]+ meV/Å", li)
    ]
    sigmas = [float(r[0]) for r in rows]
    force_mae = [float(r[1]) for r in rows]
    assert sigmas == [2, 5, 10]
    assert model.sigma == sigmas[int(np.argmin(force_mae))]
    assert "<- best" in next(
        li for li in text.splitlines() if li.split()[:1] == [f"{model.sigma:g}"]
    )

    # the printed test errors are those of the saved model on the split's test frames
    report = evaluate(model, test)
    assert _printed(text, "forces", "meV/Å") == pytest.approx(report.force_mae * 1e3, abs=0.01)
    assert _printed(text, "forces", "kcal/mol/Å") == pytest.approx(
        report.to_dict()["force_mae_kcal_mol_A"], abs=1e-3
    )
    assert _printed(text, "energy", "meV") == pytest.approx(report.energy_mae * 1e3, abs=0.01)
    assert f"{report.n_frames} frames" in text


def test_evaluate_reproduces_the_test_errors_and_refuses_training_frames(trained, tmp_path, capsys):
    _, out, text = trained
    parity = tmp_path / "parity.png"
    split = split_path(out)
    assert (
        main(
            [
                "evaluate",
                str(out),
                str(DATA),
                "--split",
                str(split),
                "--parity",
                str(parity),
                "--no-progress",
            ]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert _printed(shown, "forces", "meV/Å") == _printed(text, "forces", "meV/Å")
    assert parity.stat().st_size > 0

    assert main(["evaluate", str(out), str(DATA), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "12 of the 24 frames were in this model's training set" in err
    assert (
        main(
            [
                "evaluate",
                str(out),
                str(DATA),
                "--split",
                str(split),
                "--part",
                "train",
                "--allow-training-frames",
                "--no-progress",
            ]
        )
        == 0
    )
    # at these small sigmas the kernel model interpolates its training forces
    assert _printed(capsys.readouterr().out, "forces", "meV/Å") < 0.01 * _printed(
        text, "forces", "meV/Å"
    )


def test_gdml_has_no_symmetries_and_a_split_file_is_reused(trained, tmp_path):
    _, first, _ = trained
    rc, out = _train(tmp_path, "--model", "gdml", "--sigma", "5", "--split", str(split_path(first)))
    assert rc == 0
    model = load_model(out)
    assert model.permutations is None and model.permutations_.shape == (1, 9)
    assert model.sigma == 5
    assert np.array_equal(model.training_.source_indices, Split.load(split_path(first)).train)


def test_krr_defaults_to_the_median_heuristic_without_validation(tmp_path, capsys):
    rc, out = _train(tmp_path, "--model", "krr", "--n-train", "16", "--n-test", "4")
    assert rc == 0
    assert "16 train, 0 valid, 4 test" in capsys.readouterr().out
    model = load_model(out)
    assert isinstance(model, KRR) and model.sigma == "median" and model.sigma_ > 0


def test_refuses_to_overwrite_before_training(tmp_path, capsys):
    out = tmp_path / "model.npz"
    out.write_text("user data")
    rc, _ = _train(tmp_path, "--sigma", "5", "--n-train", "8")
    assert rc == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "user data" and not split_path(out).exists()
    rc, _ = _train(tmp_path, "--sigma", "5", "--n-train", "8", "--overwrite")
    assert rc == 0 and load_model(out).n_train_ == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sigma-grid", "2,5", "--n-valid", "0"], "needs validation frames"),
        (["--sigma-grid", "2,x"], "not a comma-separated list"),
        (["--sigma-grid", "2,-5"], "positive"),
        (["--sigma", "5", "--n-train", "24"], "no test frames left"),
        (["--sigma", "5", "--n-train", "30"], "exceeds the 24 frames"),
    ],
)
def test_bad_requests_are_one_clean_line(tmp_path, capsys, extra, message):
    rc, out = _train(tmp_path, *extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("mlffkit train: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_output_must_be_npz(tmp_path, capsys):
    assert main(["train", str(DATA), "--sigma", "5", "-o", str(tmp_path / "model.pkl")]) == 2
    assert "name the output e.g. model.npz" in capsys.readouterr().err


def test_sigma_grid_parsing():
    assert parse_sigma_grid("2, 5,10,") == [2.0, 5.0, 10.0]
    with pytest.raises(ValueError, match="positive"):
        parse_sigma_grid("")


def test_schnet_trains_tests_saves_and_resumes(tmp_path, capsys):
    from mlffkit.models import SchNet

    ckpt = tmp_path / "run.ckpt"
    small = ["--model", "schnet", "--n-train", "12", "--n-valid", "4", "--features", "8",
             "--interactions", "1", "--batch-size", "4", "--checkpoint", str(ckpt)]
    rc, out = _train(tmp_path, *small, "--epochs", "2")
    text = capsys.readouterr().out
    assert rc == 0 and ckpt.exists() and split_path(out).exists()
    assert "trained SchNet (8 features, 1 interactions) on 12 frames" in text
    model = load_model(out)
    assert isinstance(model, SchNet) and len(model.history_) == 2
    test = Split.load(split_path(out)).apply(load(DATA))[2]
    assert evaluate(model, test).force_mae * 1e3 == pytest.approx(
        _printed(text, "forces", "meV/Å"), abs=0.01
    )
    # an existing checkpoint is continued only when asked
    assert _train(tmp_path, *small, "--epochs", "3", "--overwrite")[0] == 2
    assert "resume=True" in capsys.readouterr().err
    rc, out = _train(tmp_path, *small, "--epochs", "3", "--overwrite", "--resume")
    assert rc == 0 and len(load_model(out).history_) == 3
    # kernel options make no sense for a network
    assert _train(tmp_path, "--model", "schnet", "--sigma", "5")[0] == 2
    assert "kernel options" in capsys.readouterr().err
