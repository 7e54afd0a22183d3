"""KRR on energies: kernel gradients, forces by differentiation, agreement with scikit-learn."""

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.kernel_ridge import KernelRidge

import mlffkit
from mlffkit.data import Dataset
from mlffkit.descriptors import CoulombMatrix
from mlffkit.kernels import KERNELS, kernel_gradient_sum, kernel_matrix
from mlffkit.models import KRR, load_model

FIXTURE = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"


@pytest.fixture(scope="module")
def ethanol():
    """24 frames of 500 K ethanol labelled with GFN2-xTB: 16 to train, 8 to test."""
    ds = mlffkit.data.load(FIXTURE)
    return ds[:16], ds[16:]


@pytest.mark.parametrize("kind", KERNELS)
def test_kernel_gradient_sum_matches_autograd(kind):
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(4, 5)), requires_grad=True)
    y = torch.as_tensor(rng.normal(size=(6, 5)))
    w = torch.as_tensor(rng.normal(size=6))
    (kernel_matrix(x, y, kind, 1.3) @ w).sum().backward()
    np.testing.assert_allclose(
        kernel_gradient_sum(x.detach(), y, w, kind, 1.3).numpy(),
        x.grad.numpy(),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("kind", ["gaussian", "matern52"])
def test_forces_are_minus_the_gradient_of_the_energy(ethanol, kind):
    train, test = ethanol
    model = KRR(kernel=kind).fit(train)
    pos = test.positions[:1].copy()
    _, forces = model.predict(pos)
    h = 1e-5
    fd = np.zeros((9, 3))
    for a in range(9):
        for c in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[0, a, c] += h
            minus[0, a, c] -= h
            fd[a, c] = -(model.predict(plus)[0][0] - model.predict(minus)[0][0]) / (2 * h)
    np.testing.assert_allclose(forces[0], fd, atol=1e-6 * np.abs(fd).max())


def test_energies_agree_with_scikit_learn_kernel_ridge(ethanol):
    train, test = ethanol
    model = KRR(kernel="gaussian", sigma=0.3, lam=1e-6).fit(train)
    x_train = model.descriptor_.transform(train)
    ref = KernelRidge(kernel="rbf", gamma=1 / (2 * 0.3**2), alpha=1e-6)
    ref.fit(x_train, train.energies - train.energies.mean())
    expected = ref.predict(model.descriptor_.transform(test)) + train.energies.mean()
    np.testing.assert_allclose(model.predict(test)[0], expected, rtol=0, atol=1e-8)


def test_median_sigma_and_descriptor_choice(ethanol):
    train, _ = ethanol
    model = KRR().fit(train)
    x = model.descriptor_.transform(train)
    assert x.shape == (16, 36)
    assert model.sigma_ == pytest.approx(float(torch.pdist(torch.as_tensor(x)).median()))
    assert KRR(descriptor="coulomb_eigenvalues").fit(train).train_descriptors_.shape == (16, 9)


def test_fits_a_dataset_without_forces_and_round_trips(ethanol, tmp_path):
    train, test = ethanol
    energies_only = Dataset(train.numbers, train.positions, train.energies)
    model = KRR(descriptor=CoulombMatrix("eigenvalues"), kernel="laplacian").fit(energies_only)
    model.save(tmp_path / "krr.npz")
    loaded = load_model(tmp_path / "krr.npz")
    assert isinstance(loaded, KRR) and loaded.descriptor.variant == "eigenvalues"
    for a, b in zip(model.predict(test), loaded.predict(test), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_input(ethanol):
    train, _ = ethanol
    with pytest.raises(ValueError, match="no energies"):
        KRR().fit(Dataset(train.numbers, train.positions, forces=train.forces))
    with pytest.raises(ValueError, match="unknown kernel"):
        KRR(kernel="cosine").fit(train)
    with pytest.raises(ValueError, match="sigma"):
        KRR(sigma=-1.0).fit(train)
