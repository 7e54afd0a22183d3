"""The pretrained models shipped in data/models/: right frames, accurate, usable from ASE."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from mlffkit.config import bundled_data_dir
from mlffkit.evaluation import evaluate
from mlffkit.md import run_md
from mlffkit.models import SchNet, load_model

SCRIPT = bundled_data_dir() / "make_pretrained_models.py"

#: test-set errors (1500 frames) measured when the file was made (data/models/README.md:
#: 5.3 meV, 19.4 meV/Å), eV and eV/Å, with 30 % headroom for other torch/BLAS builds
BOUNDS = {"schnet_ethanol_gfn2": {"energy_mae": 1.3 * 0.00532, "force_mae": 1.3 * 0.01936}}


def _recipes() -> dict:
    spec = importlib.util.spec_from_file_location("make_pretrained_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module.RECIPES


@pytest.fixture(scope="module")
def schnet_ethanol():
    recipe = _recipes()["schnet_ethanol_gfn2"]
    train, _, test = recipe.frames()
    return recipe, load_model(recipe.file), train, test


def test_the_file_is_small_and_holds_a_float32_schnet(schnet_ethanol):
    recipe, model, _, _ = schnet_ethanol
    assert recipe.file.stat().st_size < 1e6
    assert isinstance(model, SchNet)
    assert all(
        p.dtype.is_floating_point and p.element_size() == 4 for p in model.potential_.parameters()
    )


def test_it_was_trained_on_its_recipe_frames_and_refuses_to_be_tested_on_them(schnet_ethanol):
    recipe, model, train, test = schnet_ethanol
    assert model.training_.frame_hashes == tuple(train.frame_hashes())
    assert len(train) == recipe.n_train
    assert not set(model.training_.source_indices) & set(test.source_indices)
    with pytest.raises(ValueError, match="training set"):
        evaluate(model, train[:5])


def test_errors_on_frames_it_never_saw_are_as_measured(schnet_ethanol):
    recipe, model, _, test = schnet_ethanol
    report = evaluate(model, test)
    bound = BOUNDS[recipe.name]
    assert report.force_mae < bound["force_mae"]
    assert report.energy_mae < bound["energy_mae"]
    # and far better than knowing nothing: predicting zero forces, or the mean energy
    assert report.force_mae < 0.2 * np.abs(test.forces).mean()
    assert report.energy_mae < 0.3 * np.abs(test.energies - test.energies.mean()).mean()


def test_load_model_gives_an_ase_calculator_that_runs_stable_nve_md(schnet_ethanol):
    _, model, _, test = schnet_ethanol
    atoms = test[3]
    reference_forces = atoms.get_forces()
    atoms.calc = model.calculator()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    (e_pred,), (f_pred,) = model.predict(test[3])
    assert energy == pytest.approx(e_pred, abs=1e-5)
    np.testing.assert_allclose(forces, f_pred, atol=1e-5)
    assert np.abs(forces - reference_forces).mean() < BOUNDS["schnet_ethanol_gfn2"]["force_mae"] * 3
    # forces are the gradient of the energy: NVE keeps the total energy (0.5 fs, 500 K)
    run = run_md(
        atoms,
        None,
        ensemble="nve",
        steps=200,
        timestep_fs=0.5,
        temperature_K=500,
        interval=5,
        seed=0,
        progress=False,
    )
    assert run.stable
    # (0.5 meV/atom measured: the O(dt²) fluctuation of velocity Verlet)
    assert run.energy_drift().max_deviation_meV_per_atom < 2.0
