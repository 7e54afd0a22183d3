"""(s)GDML: the kernel against autograd, the trained model's physics, persistence, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.fd import calculate_numerical_forces
from scipy.spatial.transform import Rotation

import mlffkit
from mlffkit.data import Dataset
from mlffkit.descriptors import inverse_distances, pair_permutation
from mlffkit.kernels import assemble_kernel, force_field_kernel, kernel_tile, matern52
from mlffkit.models import GDML, KRR, LabelWarning, load_model, select_sigma
from mlffkit.symmetry import close_group

FIXTURE = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"
SIGMA = 5.0


@pytest.fixture(scope="module")
def ethanol():
    """24 frames of 500 K ethanol labelled with GFN2-xTB: 16 to train, 8 to test."""
    ds = mlffkit.data.load(FIXTURE)
    return ds[:16], ds[16:]


@pytest.fixture(scope="module")
def model(ethanol):
    return GDML(sigma=SIGMA).fit(ethanol[0], progress=False)


def _descriptors(positions):
    x, jac = inverse_distances(torch.as_tensor(positions), jacobian=True)
    return x, jac.flatten(2)


def _group(numbers):
    """A symmetry group of the fixture's ethanol: methyl rotation and the CH2/methyl reflection."""
    h = np.flatnonzero(numbers == 1)
    rotation, reflection = np.arange(9), np.arange(9)
    rotation[h[:3]] = np.roll(h[:3], 1)
    reflection[h[:2]] = h[:2][::-1]
    return close_group([rotation, reflection])


def _energy_kernel(r1, r2, perm_index):
    """Symmetrised Matérn kernel between two frames, as a function of their positions."""
    x1 = inverse_distances(r1[None])[0]
    x2 = inverse_distances(r2[None])[0]
    return sum(matern52(torch.linalg.vector_norm(x1 - x2[p]), SIGMA) for p in perm_index)


# --------------------------------------------------------------------------- kernel
def test_force_kernel_is_the_mixed_hessian_of_the_energy_kernel(ethanol):
    """K_F(r1, r2) = d^2 k / dr1 dr2, checked against autograd and finite differences."""
    train, _ = ethanol
    perm_index = torch.as_tensor(np.stack([pair_permutation(p) for p in _group(train.numbers)]))
    r1, r2 = (torch.as_tensor(train.positions[i]) for i in (0, 5))
    x, jac = _descriptors(train.positions[[0, 5]])
    kf = force_field_kernel(x[:1], jac[:1], x[1:], jac[1:], SIGMA, perm_index).numpy()

    def grad1(b):
        return torch.autograd.functional.jacobian(
            lambda a: _energy_kernel(a, b, perm_index), r1, create_graph=True
        ).reshape(-1)

    auto = torch.autograd.functional.jacobian(grad1, r2).reshape(27, 27).detach().numpy()
    np.testing.assert_allclose(kf, auto, rtol=1e-9, atol=1e-12 * np.abs(auto).max())

    h = 1e-4
    fd = np.zeros((27, 27))
    for k in range(27):
        step = torch.zeros(27, dtype=torch.float64)
        step[k] = h
        step = step.reshape(9, 3)
        fd[:, k] = ((grad1(r2 + step) - grad1(r2 - step)) / (2 * h)).detach().numpy()
    np.testing.assert_allclose(kf, fd, atol=1e-6 * np.abs(fd).max())


def test_energy_covariances_match_autograd(ethanol):
    train, _ = ethanol
    perm_index = torch.as_tensor(np.stack([pair_permutation(p) for p in _group(train.numbers)]))
    r1, r2 = (torch.as_tensor(train.positions[i]) for i in (1, 7))
    x, jac = _descriptors(train.positions[[1, 7]])
    t = kernel_tile(
        x[:1], jac[:1], x[1:][:, perm_index], jac[1:][:, perm_index], SIGMA, energies=True
    )
    k = _energy_kernel(r1, r2, perm_index)
    d1 = torch.autograd.functional.jacobian(
        lambda a: _energy_kernel(a, r2, perm_index), r1
    ).reshape(-1)
    d2 = torch.autograd.functional.jacobian(
        lambda b: _energy_kernel(r1, b, perm_index), r2
    ).reshape(-1)
    # F = -dE/dr: Cov(F1, E2) = -dk/dr1, Cov(E1, F2) = -dk/dr2
    np.testing.assert_allclose(t["fe"][0, :, 0].numpy(), -d1.numpy(), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(t["ef"][0, 0].numpy(), -d2.numpy(), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(float(t["ee"][0, 0]), float(k), rtol=1e-12)


@pytest.mark.parametrize("energies", [False, True])
def test_tiled_assembly_fills_the_upper_triangle_of_the_full_kernel(ethanol, energies):
    train, _ = ethanol
    perm_index = torch.as_tensor(np.stack([pair_permutation(p) for p in _group(train.numbers)]))
    x, jac = _descriptors(train.positions[:7])
    n = 7 * 27 + (7 if energies else 0)
    out = torch.full((n, n), float("nan"), dtype=torch.float64)
    assemble_kernel(
        out, x, jac, perm_index, SIGMA, energies=energies, tile_numbers=20_000
    )  # many tiles
    full = force_field_kernel(x, jac, x, jac, SIGMA, perm_index).numpy()
    upper = np.triu_indices(n)
    got = out.numpy()
    assert np.all(np.isfinite(got[upper]))
    np.testing.assert_allclose(
        got[:189, :189][np.triu_indices(189)], full[np.triu_indices(189)], rtol=1e-12
    )
    sym = np.where(np.isfinite(got), got, got.T)
    np.testing.assert_allclose(sym, sym.T, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- physics
def test_fits_the_training_forces(model, ethanol):
    train, _ = ethanol
    _, forces = model.predict(train)
    assert np.abs(forces - train.forces).max() < 1e-3  # eV/Å; lam = 1e-10 all but interpolates


def _numerical_forces(model, pos, h=1e-4):
    fd = np.zeros(pos.shape)
    for a in range(pos.shape[0]):
        for c in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[a, c] += h
            minus[a, c] -= h
            fd[a, c] = -(model.predict(plus)[0][0] - model.predict(minus)[0][0]) / (2 * h)
    return fd


@pytest.mark.parametrize("constraint", [False, True])
def test_forces_are_minus_the_gradient_of_the_energy(ethanol, model, constraint):
    train, test = ethanol
    m = (
        GDML(sigma=SIGMA, use_energies_constraint=True).fit(train, progress=False)
        if constraint
        else model
    )
    pos = test.positions[0]
    np.testing.assert_allclose(m.predict(pos)[1][0], _numerical_forces(m, pos), atol=1e-5)


def test_energy_constraint_fits_training_energies(ethanol):
    train, _ = ethanol
    free = GDML(sigma=SIGMA).fit(train, progress=False)
    constrained = GDML(sigma=SIGMA, use_energies_constraint=True).fit(train, progress=False)
    err_free = np.abs(free.predict(train)[0] - train.energies).max()
    err_constrained = np.abs(constrained.predict(train)[0] - train.energies).max()
    # The constraint makes the model interpolate the training energies (up to the
    # regulariser and the SCF noise of the labels); without it they are only fitted
    # through the integration constant.
    assert err_constrained < 1e-3
    assert err_constrained < 0.05 * err_free


def test_rotation_translation_invariance_and_force_equivariance(model, ethanol):
    _, test = ethanol
    pos = test.positions[:3]
    rot = Rotation.random(random_state=1).as_matrix()
    moved = pos @ rot.T + np.array([3.0, -1.0, 2.0])
    e0, f0 = model.predict(pos)
    e1, f1 = model.predict(moved)
    np.testing.assert_allclose(e1, e0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(f1, f0 @ rot.T, atol=1e-9)


def test_symmetrised_model_is_permutation_invariant_and_plain_gdml_is_not(ethanol):
    train, test = ethanol
    group = _group(train.numbers)
    pos = test.positions[:2]
    p = group[1]
    sym = GDML(sigma=SIGMA, permutations=group).fit(train, progress=False)
    e0, f0 = sym.predict(pos)
    e1, f1 = sym.predict(pos[:, p])
    np.testing.assert_allclose(e1, e0, atol=1e-9)
    np.testing.assert_allclose(f1, f0[:, p], atol=1e-9)
    plain = GDML(sigma=SIGMA, permutations=None).fit(train, progress=False)
    assert len(plain.permutations_) == 1
    assert not np.allclose(plain.predict(pos[:, p])[1], plain.predict(pos)[1][:, p], atol=1e-3)


def test_gdml_beats_krr_on_forces(model, ethanol):
    train, test = ethanol
    gdml_mae = np.abs(model.predict(test)[1] - test.forces).mean()
    krr = KRR(kernel="matern52").fit(train)
    krr_mae = np.abs(krr.predict(test)[1] - test.forces).mean()
    assert gdml_mae < 0.7 * krr_mae


def test_agrees_with_sgdml(ethanol, monkeypatch):
    """Same frames, same sigma and symmetries: the same predictions as the reference package."""
    pytest.importorskip("sgdml")
    monkeypatch.setattr(np, "in1d", np.isin, raising=False)  # sgdml 1.0.3 on NumPy 2
    from sgdml.predict import GDMLPredict
    from sgdml.train import GDMLTrain

    train, test = ethanol
    mine = GDML(sigma=SIGMA, permutations=_group(train.numbers)).fit(train, progress=False)
    base = {
        "type": "d",
        "name": np.array("ethanol"),
        "theory": np.array("GFN2-xTB"),
        "z": train.numbers,
        "R": train.positions,
        "E": train.energies,
        "F": train.forces,
        "md5": np.array("-"),
    }
    trainer = GDMLTrain(max_processes=1)
    task = trainer.create_task(
        base, len(train), base, 0, SIGMA, lam=1e-10, perms=mine.permutations_
    )
    task.update(
        idxs_train=np.arange(len(train)),
        R_train=train.positions,
        F_train=train.forces,
        E_train=train.energies,
    )
    reference = GDMLPredict(trainer.train(task), max_processes=1)
    e_ref, f_ref = reference.predict(test.positions.reshape(len(test), -1))
    e, f = mine.predict(test)
    np.testing.assert_allclose(f, f_ref.reshape(f.shape), atol=1e-5 * np.abs(f_ref).max())
    np.testing.assert_allclose(e, e_ref, atol=1e-6)


# --------------------------------------------------------------------------- diagnostics
def test_gradients_instead_of_forces_are_flagged(ethanol):
    train, _ = ethanol
    flipped = Dataset(train.numbers, train.positions, train.energies, -train.forces)
    with pytest.warns(LabelWarning, match="gradients"):
        GDML(sigma=SIGMA).fit(flipped, progress=False)


def test_energy_units_mismatch_is_flagged(ethanol):
    train, _ = ethanol
    kcal = Dataset(train.numbers, train.positions, train.energies * 23.06, train.forces)
    with pytest.warns(LabelWarning, match="different units"):
        GDML(sigma=SIGMA).fit(kcal, progress=False)


# --------------------------------------------------------------------------- interface
def test_save_load_round_trip(model, ethanol, tmp_path):
    _, test = ethanol
    path = tmp_path / "gdml.npz"
    model.save(path)
    with pytest.raises(FileExistsError):
        model.save(path)
    model.save(path, overwrite=True)
    loaded = load_model(path, batch_size=3)
    assert isinstance(loaded, GDML) and loaded.batch_size == 3
    assert loaded.get_params()["sigma"] == SIGMA
    np.testing.assert_array_equal(loaded.permutations_, model.permutations_)
    for a, b in zip(model.predict(test), loaded.predict(test), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)  # chunking changes the last bits
    assert loaded.training_ == model.training_
    with pytest.raises(ValueError, match="only"):
        load_model(path, sigma=3.0)
    bad = tmp_path / "other.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match="not an mlffkit model"):
        load_model(bad)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")


def test_model_files_of_format_1_still_load(model, ethanol, tmp_path):
    # format 2 stores the JSON header as UTF-8 bytes; format 1 stored a numpy unicode
    # string (four bytes a character): rewrite a saved file the old way and read it back
    _, test = ethanol
    path = model.save(tmp_path / "new.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert arrays["header"].dtype == np.uint8
    header = json.loads(arrays["header"].tobytes().decode("utf-8"))
    assert header["format_version"] == 2
    header["format_version"] = 1
    old = tmp_path / "old.npz"
    np.savez(old, **{**arrays, "header": np.array(json.dumps(header))})
    for a, b in zip(model.predict(test), load_model(old).predict(test), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, **{**arrays, "header": np.frombuffer(b"\xff{", dtype=np.uint8)})
    with pytest.raises(ValueError, match="damaged"):
        load_model(damaged)


def test_ase_calculator_forces_match_numerical_forces(model, ethanol):
    _, test = ethanol
    atoms = test[0]
    atoms.calc = model.calculator()
    energy = atoms.get_potential_energy()
    assert energy == pytest.approx(model.predict(atoms)[0][0])
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), numerical, atol=1e-6)


def test_refuses_test_frames_it_was_trained_on(model, ethanol):
    train, test = ethanol
    model.check_not_trained_on(test)
    with pytest.raises(ValueError, match="training set"):
        model.check_not_trained_on(mlffkit.data.load(FIXTURE))


def test_get_set_params_and_score(model, ethanol):
    _, test = ethanol
    params = model.get_params()
    assert params["sigma"] == SIGMA and params["permutations"] == "auto"
    assert GDML(sigma=1.0).set_params(sigma=5.0).sigma == 5.0
    assert 0.5 < model.score(test) <= 1.0


def test_bad_input_gives_clear_errors(model, ethanol):
    train, test = ethanol
    with pytest.raises(ValueError, match="same atoms in the same order"):
        model.predict(Dataset(train.numbers[::-1], train.positions[:2]))
    with pytest.raises(ValueError, match="atoms"):
        model.predict(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="no forces"):
        GDML(sigma=SIGMA).fit(
            Dataset(train.numbers, train.positions, train.energies), progress=False
        )
    with pytest.raises(ValueError, match="same frame more than once"):
        GDML(sigma=SIGMA).fit(Dataset.concatenate([train, train[:1]]), progress=False)
    with pytest.raises(ValueError, match="sigma"):
        GDML(sigma=-1.0).fit(train, progress=False)
    with pytest.raises(ValueError, match="permutations"):
        GDML(sigma=SIGMA, permutations="all").fit(train, progress=False)
    with pytest.raises(ValueError, match="only like atoms"):
        GDML(sigma=SIGMA, permutations=[[2, 1, 0, 3, 4, 5, 6, 7, 8]]).fit(train, progress=False)
    periodic = Dataset(
        train.numbers, train.positions, train.energies, train.forces, cell=np.eye(3) * 10
    )
    with pytest.raises(ValueError, match="periodic"):
        GDML(sigma=SIGMA).fit(periodic, progress=False)
    with pytest.raises(ValueError, match="periodic"):
        model.predict(periodic)
    with pytest.raises(RuntimeError, match="not trained"):
        GDML(sigma=SIGMA).predict(test)


def test_trains_without_energies(ethanol):
    train, test = ethanol
    forces_only = Dataset(train.numbers, train.positions, forces=train.forces)
    with pytest.warns(UserWarning, match="up to a constant"):
        m = GDML(sigma=SIGMA).fit(forces_only, progress=False)
    assert not m.has_energy_reference_
    assert np.isfinite(m.predict(test)[0]).all()


def test_select_sigma(ethanol):
    train, test = ethanol
    best, curve = select_sigma(train, test, [2.0, 10.0, 50.0], progress=False)
    assert best.sigma == curve.best_sigma == curve.sigmas[np.nanargmin(curve.force_mae)]
    assert np.all(np.isfinite(curve.energy_mae))
    assert curve.plot().axes
    with pytest.raises(ValueError, match="also appear in the training data"):
        select_sigma(train, train, [5.0], progress=False)


def test_torch_solver_reads_only_the_upper_triangle():
    """The solver used on GPUs, checked on the CPU: it must ignore the lower triangle."""
    from mlffkit.models.gdml import _solve_upper_in_torch

    rng = np.random.default_rng(0)
    b = rng.normal(size=(50, 50))
    k = b @ b.T + 50 * np.eye(50)
    y = rng.normal(size=50)
    upper = np.triu(k) + np.tril(np.full((50, 50), np.nan), -1)
    x = _solve_upper_in_torch(torch.as_tensor(upper), torch.as_tensor(y), 1e-3, block=16).numpy()
    np.testing.assert_allclose((k + 1e-3 * np.eye(50)) @ x, y, atol=1e-10)
    assert _solve_upper_in_torch(torch.as_tensor(-np.eye(3)), torch.ones(3), 0.0) is None


@pytest.mark.gpu
def test_cuda_matches_cpu(model, ethanol):
    train, test = ethanol
    gpu = GDML(sigma=SIGMA, device="cuda").fit(train, progress=False)
    for a, b in zip(gpu.predict(test), model.predict(test), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)


def test_label_check_reports_each_problem_once_and_tolerates_scatter():
    import warnings

    from mlffkit.models.diagnostics import check_energy_force_consistency

    rng = np.random.default_rng(0)
    e = rng.normal(size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 10 % slope from a small training set is no alarm
        check_energy_force_consistency(0.9 * e, e)
    with pytest.warns(LabelWarning, match="gradients"):
        check_energy_force_consistency(-e, e)
    with pytest.warns(LabelWarning, match="different units"):
        check_energy_force_consistency(e / 23.06, e)
    with pytest.warns(LabelWarning, match="weakly") as record:
        check_energy_force_consistency(rng.permutation(e), e)
    assert len(record) == 1  # uncorrelated labels: no meaningless sign or unit verdict


def test_select_sigma_reports_label_problems_of_the_chosen_model_only(ethanol):
    train, valid = ethanol
    flipped = mlffkit.data.Dataset(train.numbers, train.positions, train.energies, -train.forces)
    with pytest.warns(LabelWarning) as record:
        select_sigma(flipped, valid, [2.0, 5.0, 10.0], progress=False)
    assert len([w for w in record if issubclass(w.category, LabelWarning)]) == 1
