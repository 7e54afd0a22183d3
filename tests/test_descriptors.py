"""Descriptors: Jacobians against finite differences and autograd, invariances, scikit-learn use."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from scipy.spatial.transform import Rotation
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from mlffkit.data import Dataset
from mlffkit.descriptors import (
    CoulombMatrix,
    InverseDistances,
    coulomb_matrix,
    inverse_distances,
    make_descriptor,
    pair_permutation,
)

ETHANOL = molecule("CH3CH2OH")
Z = torch.as_tensor(ETHANOL.numbers)


def _frames(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(ETHANOL.positions[None] + 0.08 * rng.normal(size=(n, 9, 3)))


DESCRIPTORS = {
    "inverse_distances": lambda p, jac=False: inverse_distances(p, jacobian=jac),
    "coulomb_full": lambda p, jac=False: coulomb_matrix(p, Z, "full", jacobian=jac),
    "coulomb_sorted": lambda p, jac=False: coulomb_matrix(p, Z, "sorted", jacobian=jac),
    "coulomb_eigenvalues": lambda p, jac=False: coulomb_matrix(p, Z, "eigenvalues", jacobian=jac),
}


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_jacobian_matches_autograd(name):
    f = DESCRIPTORS[name]
    pos = _frames()
    _, jac = f(pos, True)
    auto = torch.autograd.functional.jacobian(lambda p: f(p).sum(0), pos)  # (d, n, N, 3)
    np.testing.assert_allclose(
        jac.numpy(), auto.permute(1, 0, 2, 3).numpy(), atol=1e-12, rtol=1e-10
    )


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_jacobian_matches_finite_differences(name):
    f = DESCRIPTORS[name]
    pos = _frames(1, seed=1)
    _, jac = f(pos, True)
    h = 1e-5
    fd = torch.zeros_like(jac)
    for a in range(9):
        for c in range(3):
            step = torch.zeros_like(pos)
            step[0, a, c] = h
            fd[0, :, a, c] = (f(pos + step) - f(pos - step))[0] / (2 * h)
    np.testing.assert_allclose(jac.numpy(), fd.numpy(), atol=1e-7 * float(jac.abs().max()))


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_rotation_and_translation_invariance(name):
    f = DESCRIPTORS[name]
    pos = _frames()
    rot = torch.as_tensor(Rotation.random(random_state=3).as_matrix())
    moved = pos @ rot.T + torch.tensor([1.5, -2.0, 0.7])
    np.testing.assert_allclose(f(moved).numpy(), f(pos).numpy(), rtol=1e-10, atol=1e-12)


# Swapping the two CH2 hydrogens (atoms 3, 4) and cycling the methyl hydrogens (5, 6, 7)
SWAP = np.array([0, 1, 2, 4, 3, 6, 7, 5, 8])


@pytest.mark.parametrize("name", ["coulomb_sorted", "coulomb_eigenvalues"])
def test_sorted_coulomb_matrix_and_eigenvalues_are_permutation_invariant(name):
    f = DESCRIPTORS[name]
    pos = _frames()
    np.testing.assert_allclose(f(pos[:, SWAP]).numpy(), f(pos).numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["inverse_distances", "coulomb_full"])
def test_inverse_distances_and_full_coulomb_matrix_are_not_permutation_invariant(name):
    """These descriptors depend on the atom order: sGDML adds the symmetry in the kernel."""
    f = DESCRIPTORS[name]
    pos = _frames()
    assert not np.allclose(f(pos[:, SWAP]).numpy(), f(pos).numpy(), rtol=1e-3)


def test_pair_permutation_reorders_inverse_distances_like_permuting_atoms():
    pos = _frames()
    perm = np.array([0, 1, 2, 4, 3, 7, 5, 6, 8])
    np.testing.assert_array_equal(
        inverse_distances(pos[:, perm]).numpy(),
        inverse_distances(pos).numpy()[:, pair_permutation(perm)],
    )


def test_inverse_distance_order_is_lower_triangle():
    pos = _frames(1)[0].numpy()
    i, j = np.tril_indices(9, k=-1)
    np.testing.assert_allclose(
        inverse_distances(torch.as_tensor(pos[None]))[0].numpy(),
        1 / np.linalg.norm(pos[i] - pos[j], axis=1),
    )


def test_transformer_accepts_dataset_atoms_and_arrays():
    pos = _frames(4).numpy()
    ds = Dataset(ETHANOL.numbers, pos)
    desc = CoulombMatrix("eigenvalues").fit(ds)
    np.testing.assert_allclose(desc.transform(ds), desc.transform(pos))
    np.testing.assert_allclose(desc.transform(pos.reshape(4, -1)), desc.transform(pos))
    assert desc.transform(ETHANOL).shape == (1, 9)
    assert desc.jacobian(ds).shape == (4, 9, 9, 3)
    assert InverseDistances().fit_transform(ds).shape == (4, 36)


def test_transformer_rejects_other_molecule_and_missing_numbers():
    desc = CoulombMatrix().fit(ETHANOL)
    with pytest.raises(ValueError, match="same atoms in the same order"):
        desc.transform(ETHANOL[::-1])
    with pytest.raises(ValueError, match="atoms"):
        desc.transform(molecule("CH4"))
    with pytest.raises(ValueError, match="needs the atomic numbers"):
        CoulombMatrix().fit_transform(_frames().numpy())
    with pytest.raises(ValueError, match="unknown descriptor"):
        make_descriptor("soap")
    with pytest.raises(ValueError, match="variant"):
        CoulombMatrix("diagonal").fit(ETHANOL)


def test_kernel_ridge_pipeline_with_grid_search():
    """A KRR baseline from scikit-learn's own parts: descriptor transformer + KernelRidge."""
    rng = np.random.default_rng(4)
    pos = ETHANOL.positions[None] + 0.05 * rng.normal(size=(30, 9, 3))
    energies = 1.0 / np.linalg.norm(pos[:, 1] - pos[:, 2], axis=1)  # a smooth toy target
    pipe = make_pipeline(InverseDistances(), KernelRidge(kernel="rbf"))
    search = GridSearchCV(
        pipe, {"kernelridge__alpha": [1e-6, 1e-3], "kernelridge__gamma": [0.1, 1.0]}, cv=3
    )
    search.fit(pos, energies)
    assert search.best_score_ > 0.9


@pytest.mark.gpu
def test_descriptors_on_cuda_match_cpu():
    pos = _frames()
    for name, f in DESCRIPTORS.items():
        if name.startswith("coulomb"):
            continue
        x_cpu, j_cpu = f(pos, True)
        x_gpu, j_gpu = f(pos.cuda(), True)
        np.testing.assert_allclose(x_gpu.cpu().numpy(), x_cpu.numpy(), rtol=1e-12)
        np.testing.assert_allclose(j_gpu.cpu().numpy(), j_cpu.numpy(), rtol=1e-12, atol=1e-14)
    desc = CoulombMatrix("sorted", device="cuda").fit(ETHANOL)
    np.testing.assert_allclose(
        desc.transform(pos.numpy()), CoulombMatrix("sorted").fit(ETHANOL).transform(pos.numpy())
    )
