"""The pretrained models shipped in data/models/: right frames, accurate, usable from ASE;
the attention model also interpretable."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from mlffkit import models
from mlffkit.config import bundled_data_dir
from mlffkit.evaluation import evaluate
from mlffkit.md import run_md
from mlffkit.models import load_model

SCRIPT = bundled_data_dir() / "make_pretrained_models.py"

#: test-set errors (1500 frames) measured when the files were made (data/models/README.md),
#: eV and eV/Å, with 30 % headroom for other torch/BLAS builds; and how far below the
#: errors of knowing nothing (zero forces, the mean energy) each model must stay
BOUNDS = {
    "schnet_ethanol_gfn2": {
        "energy_mae": 1.3 * 0.00532, "force_mae": 1.3 * 0.01936,
        "vs_zero_forces": 0.2, "vs_mean_energy": 0.3,
    },
    "geomatt_ethanol_gfn2": {
        "energy_mae": 1.3 * 0.0140, "force_mae": 1.3 * 0.0464,
        "vs_zero_forces": 0.1, "vs_mean_energy": 0.2,
    },
}  # fmt: skip


def _recipes() -> dict:
    spec = importlib.util.spec_from_file_location("make_pretrained_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module.RECIPES


def _shipped(name: str):
    recipe = _recipes()[name]
    train, _, test = recipe.frames()
    return recipe, load_model(recipe.file), train, test


@pytest.fixture(scope="module", params=sorted(BOUNDS))
def shipped(request):
    return _shipped(request.param)


@pytest.fixture(scope="module")
def schnet_ethanol():
    return _shipped("schnet_ethanol_gfn2")


@pytest.fixture(scope="module")
def attention_ethanol():
    return _shipped("geomatt_ethanol_gfn2")


def test_the_file_is_small_and_holds_the_recipe_network_in_float32(shipped):
    recipe, model, _, _ = shipped
    assert recipe.file.stat().st_size < 1e6
    assert isinstance(model, getattr(models, recipe.estimator))
    params = model.get_params()
    for name, value in recipe.params.items():
        assert params[name] == value, name
    assert all(
        p.dtype.is_floating_point and p.element_size() == 4 for p in model.potential_.parameters()
    )


def test_it_was_trained_on_its_recipe_frames_and_refuses_to_be_tested_on_them(shipped):
    recipe, model, train, test = shipped
    assert model.training_.frame_hashes == tuple(train.frame_hashes())
    assert len(train) == recipe.n_train
    assert not set(model.training_.source_indices) & set(test.source_indices)
    with pytest.raises(ValueError, match="training set"):
        evaluate(model, train[:5])


def test_errors_on_frames_it_never_saw_are_as_measured(shipped):
    recipe, model, _, test = shipped
    report = evaluate(model, test)
    bound = BOUNDS[recipe.name]
    assert report.n_frames == 1500
    assert report.force_mae < bound["force_mae"]
    assert report.energy_mae < bound["energy_mae"]
    # and far better than knowing nothing: predicting zero forces, or the mean energy
    assert report.force_mae < bound["vs_zero_forces"] * np.abs(test.forces).mean()
    assert report.energy_mae < bound["vs_mean_energy"] * np.abs(
        test.energies - test.energies.mean()
    ).mean()


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


def test_interpret_gives_symmetric_attention_and_atomic_energies_that_add_up(attention_ethanol):
    _, model, _, test = attention_ethanol
    atoms = test[7]
    result = model.interpret(atoms)
    (energy,), (forces,) = model.predict(atoms)
    assert result.orders == (2, 3, 4) and result.n_layers == 2
    assert result.symbols == atoms.get_chemical_symbols()
    assert result.energy == pytest.approx(energy, abs=1e-5)
    np.testing.assert_allclose(result.forces, forces, atol=1e-5)
    assert result.atomic_energies.sum() == pytest.approx(result.energy, abs=1e-4)
    # the geometry's share of each atom's energy: what is left after the element offsets
    np.testing.assert_allclose(
        result.interaction_energies, result.atomic_energies - result.reference_energies
    )
    for layer in range(result.n_layers):
        for k in result.orders:
            a = result.matrix(layer, k)
            assert a.shape == (len(atoms), len(atoms))
            np.testing.assert_allclose(a, a.T, atol=1e-6)
            assert np.abs(a).max() > 1e-3  # a trained model attends to something
        # pair attention: nothing to itself
        np.testing.assert_array_equal(np.diag(result.matrix(layer, 2)), 0.0)


def test_a_distant_second_molecule_changes_nothing(attention_ethanol):
    """No cutoff, but no softmax either: beyond the filters' range energies add exactly."""
    _, model, _, test = attention_ethanol
    atoms = test[3]
    far = atoms.copy()
    far.positions += [30.0, 0.0, 0.0]
    alone, pair = model.interpret(atoms), model.interpret(atoms + far)
    n = len(atoms)
    np.testing.assert_allclose(pair.atomic_energies[:n], alone.atomic_energies, atol=1e-5)
    np.testing.assert_allclose(pair.forces[:n], alone.forces, atol=1e-5)
    for k in pair.orders:
        np.testing.assert_array_equal(pair.matrix(1, k)[:n, n:], 0.0)
