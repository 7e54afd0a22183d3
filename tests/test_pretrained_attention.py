"""The shipped geometric attention model (data/models/geomatt_ethanol_gfn2.npz): right frames,
accurate on frames it never saw, and interpretable."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mlffkit.config import bundled_data_dir
from mlffkit.evaluation import evaluate
from mlffkit.models import GeometricAttention, load_model

SCRIPT = bundled_data_dir() / "make_pretrained_attention.py"

#: errors on the 1500 test frames measured when the file was made (the card in
#: data/models/README.md), eV and eV/Å, x 1.3
FORCE_MAE_BOUND = 1.3 * 0.0464
ENERGY_MAE_BOUND = 1.3 * 0.0140


def _maker():
    spec = importlib.util.spec_from_file_location("make_pretrained_attention", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped():
    maker = _maker()
    train, _, test = maker.frames()
    return maker, load_model(maker.FILE), train, test


def test_the_file_is_small_and_holds_the_recipe_network_in_float32(shipped):
    maker, model, _, _ = shipped
    assert maker.FILE.stat().st_size < 1e6
    assert isinstance(model, GeometricAttention)
    for name, value in maker.ARCHITECTURE.items():
        saved = getattr(model, name)
        # the JSON header gives orders back as a list
        assert (tuple(saved) if name == "orders" else saved) == value
    assert all(
        p.dtype.is_floating_point and p.element_size() == 4 for p in model.potential_.parameters()
    )


def test_it_was_trained_on_its_recipe_frames_and_refuses_to_be_tested_on_them(shipped):
    maker, model, train, test = shipped
    assert model.training_.frame_hashes == tuple(train.frame_hashes())
    assert len(train) == maker.N_TRAIN
    assert not set(model.training_.source_indices) & set(test.source_indices)
    with pytest.raises(ValueError, match="training set"):
        evaluate(model, train[:5])


def test_errors_on_frames_it_never_saw_are_as_measured(shipped):
    _, model, _, test = shipped
    report = evaluate(model, test)
    assert report.n_frames == 1500
    assert report.force_mae < FORCE_MAE_BOUND
    assert report.energy_mae < ENERGY_MAE_BOUND
    # and far better than knowing nothing: zero forces, or the mean energy
    assert report.force_mae < 0.1 * np.abs(test.forces).mean()
    assert report.energy_mae < 0.2 * np.abs(test.energies - test.energies.mean()).mean()


def test_interpret_gives_symmetric_attention_and_atomic_energies_that_add_up(shipped):
    _, model, _, test = shipped
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


def test_a_distant_second_molecule_changes_nothing(shipped):
    """No cutoff, but no softmax either: beyond the filters' range energies add exactly."""
    _, model, _, test = shipped
    atoms = test[3]
    far = atoms.copy()
    far.positions += [30.0, 0.0, 0.0]
    alone, pair = model.interpret(atoms), model.interpret(atoms + far)
    n = len(atoms)
    np.testing.assert_allclose(pair.atomic_energies[:n], alone.atomic_energies, atol=1e-5)
    np.testing.assert_allclose(pair.forces[:n], alone.forces, atol=1e-5)
    for k in pair.orders:
        np.testing.assert_array_equal(pair.matrix(1, k)[:n, n:], 0.0)
