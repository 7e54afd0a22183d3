"""evaluate(): errors in meV and kcal/mol, refusal of training frames, parity and error plots."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import mlffkit
from mlffkit import units
from mlffkit.data import Dataset
from mlffkit.evaluation import evaluate, plot_error_distribution, plot_parity
from mlffkit.models import GDML

FIXTURE = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"


@pytest.fixture(scope="module")
def trained():
    ds = mlffkit.data.load(FIXTURE)
    train, test = ds[:16], ds[16:]
    return GDML(sigma=5.0).fit(train, progress=False), train, test


def test_errors_in_both_units(trained):
    model, _, test = trained
    report = evaluate(model, test)
    e, f = model.predict(test)
    assert report.force_mae == pytest.approx(np.mean(np.abs(f - test.forces)))
    assert report.energy_rmse == pytest.approx(np.sqrt(np.mean((e - test.energies) ** 2)))
    d = report.to_dict()
    assert d["force_mae_meV_A"] == pytest.approx(report.force_mae * 1000)
    assert d["energy_mae_kcal_mol"] == pytest.approx(report.energy_mae / units.KCAL_PER_MOL)
    assert d["energy_mae_kcal_mol"] == pytest.approx(report.energy_mae * 23.0605, rel=1e-4)
    text = str(report)
    assert "kcal/mol" in text and "meV" in text and "8 frames" in text


def test_refuses_training_frames_unless_asked(trained):
    model, train, _ = trained
    with pytest.raises(ValueError, match="training set"):
        evaluate(model, train)
    assert evaluate(model, train, allow_training_frames=True).force_mae < 1e-3


def test_without_energies(trained):
    model, _, test = trained
    report = evaluate(model, Dataset(test.numbers, test.positions, forces=test.forces))
    assert report.energy_mae is None and report.to_dict()["energy_rmse_meV"] is None
    assert "n/a" in str(report)
    plt.close(plot_parity(report))


def test_plots(trained):
    model, _, test = trained
    report = evaluate(model, test)
    fig = plot_parity(report, unit="meV")
    assert len(fig.axes) == 2 and "meV" in fig.axes[1].get_xlabel()
    plt.close(fig)
    fig = plot_error_distribution(report)
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="2 axes"):
        _, ax = plt.subplots()
        plot_parity(report, axes=[ax])
    plt.close("all")


def test_requires_forces(trained):
    model, _, test = trained
    with pytest.raises(ValueError, match="no forces"):
        evaluate(model, Dataset(test.numbers, test.positions, test.energies))
