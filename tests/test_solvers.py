"""Conjugate gradients, the Nyström preconditioners and the matrix-free GDML kernel operator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlffkit.data import load
from mlffkit.descriptors.inverse_distances import inverse_distances, pair_permutation
from mlffkit.kernels.gdml import GDMLKernelOperator, force_field_kernel
from mlffkit.models import GDML
from mlffkit.solvers import (
    METHODS,
    DenseOperator,
    conjugate_gradients,
    matvec_with_ridge,
    nystrom_preconditioner,
)
from mlffkit.symmetry import find_permutations

SIGMA = 20.0


@pytest.fixture(scope="module")
def ethanol():
    return load("ethanol_gfn2")[:30]


@pytest.fixture(scope="module")
def kernel(ethanol):
    """The sGDML kernel of 30 ethanol frames: dense matrix and operator."""
    perms = find_permutations(ethanol.positions, ethanol.numbers)
    perm_index = torch.as_tensor(np.stack([pair_permutation(p) for p in perms]))
    x, jac = inverse_distances(torch.as_tensor(ethanol.positions), jacobian=True)
    jac = jac.flatten(2)
    dense = force_field_kernel(x, jac, x, jac, SIGMA, perm_index)
    return dense, GDMLKernelOperator(x, jac, perm_index, SIGMA)


def test_operator_matches_the_dense_kernel(kernel):
    dense, op = kernel
    V = torch.randn(
        dense.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(op.matmat(V), dense @ V, rtol=0, atol=1e-13 * float(dense.abs().max()))
    index = torch.tensor([0, 1, 26, 27, 100, dense.shape[0] - 1])
    assert torch.equal(op.columns(index), dense[:, index])
    assert torch.allclose(op.diagonal(), dense.diagonal(), rtol=1e-12, atol=0)


def test_operator_rejects_a_wrong_shape(kernel):
    _, op = kernel
    with pytest.raises(ValueError, match="shape"):
        op.matmat(torch.zeros(5, 1, dtype=torch.float64))


def test_cg_agrees_with_a_direct_solve():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(60, 60))
    A = torch.as_tensor(A @ A.T + 60 * np.eye(60))
    b = torch.as_tensor(rng.normal(size=60))
    result = conjugate_gradients(lambda v: A @ v, b, tol=1e-12)
    assert result.converged
    assert torch.allclose(result.x, torch.linalg.solve(A, b), atol=1e-10)
    assert result.residuals[0] == 1.0 and result.residuals[-1] < 1e-12
    assert len(result.residuals) == result.n_iter + 1


def test_cg_reports_no_convergence_and_refuses_bad_input():
    A = torch.diag(torch.logspace(0, 8, 200, dtype=torch.float64))
    b = torch.ones(200, dtype=torch.float64)
    result = conjugate_gradients(lambda v: A @ v, b, tol=1e-12, max_iter=5)
    assert not result.converged and result.n_iter == 5
    with pytest.raises(ValueError, match="NaN"):
        conjugate_gradients(lambda v: A @ v, b * float("nan"))
    with pytest.raises(ValueError, match="positive definite"):
        conjugate_gradients(lambda v: -v, b)


@pytest.mark.parametrize("method", METHODS)
def test_each_preconditioner_cuts_the_steps_and_gives_the_dense_solution(kernel, ethanol, method):
    dense, op = kernel
    lam = 1e-8
    y = torch.as_tensor(ethanol.forces).reshape(-1)
    matvec = matvec_with_ridge(op, lam)
    plain = conjugate_gradients(matvec, y, tol=1e-8, max_iter=2000)
    pre = nystrom_preconditioner(op, 200, lam, method, seed=3)
    assert pre.rank <= 200 and pre.U.shape == (dense.shape[0], pre.rank)
    result = conjugate_gradients(matvec, y, pre, tol=1e-8, max_iter=2000)
    assert result.converged
    assert result.n_iter < plain.n_iter / 3
    exact = torch.linalg.solve(dense + lam * torch.eye(dense.shape[0], dtype=dense.dtype), y)
    # compare what matters: the fitted forces
    fitted = dense @ result.x
    assert torch.allclose(fitted, dense @ exact, atol=1e-6 * float(y.abs().max()))


@pytest.mark.parametrize("method", METHODS)
def test_preconditioning_lowers_the_condition_number(kernel, method):
    dense, _ = kernel
    lam = 1e-6
    op = DenseOperator(dense)
    A = dense + lam * torch.eye(dense.shape[0], dtype=dense.dtype)
    pre = nystrom_preconditioner(op, 150, lam, method, seed=0)
    # P^{-1/2} A P^{-1/2} has the eigenvalues of P^{-1} A; build P^{-1} column by column
    p_inv = pre.apply(torch.eye(dense.shape[0], dtype=dense.dtype))
    evals = torch.linalg.eigvals(p_inv @ A).real
    before = torch.linalg.cond(A)
    after = evals.max() / evals.min()
    assert after < before / 100


def test_nystrom_of_full_rank_is_the_matrix(kernel):
    dense, _ = kernel
    small = dense[:54, :54]  # two frames: rank 2 × (27 - 6 rigid-body modes)
    pre = nystrom_preconditioner(DenseOperator(small), 54, 0.0, "pivoted_cholesky")
    approx = pre.U @ torch.diag(pre.eigenvalues) @ pre.U.T
    assert torch.allclose(approx, small, atol=1e-10 * float(small.abs().max()))
    assert torch.allclose(pre.U.T @ pre.U, torch.eye(pre.rank, dtype=small.dtype), atol=1e-10)


def test_preconditioner_rejects_bad_parameters(kernel):
    _, op = kernel
    with pytest.raises(ValueError, match="unknown preconditioner"):
        nystrom_preconditioner(op, 10, 1e-8, "cholesky")
    with pytest.raises(ValueError, match="rank"):
        nystrom_preconditioner(op, 0, 1e-8)


def test_gdml_cg_matches_cholesky(ethanol):
    train, test = ethanol[:25], load("ethanol_gfn2")[100:110]
    dense = GDML(sigma=SIGMA, lam=1e-8, solver="cholesky").fit(train, progress=False)
    cg = GDML(sigma=SIGMA, lam=1e-8, solver="cg", rank=300, tol=1e-9).fit(train, progress=False)
    assert cg.solver_info_["solver"] == "cg" and cg.solver_info_["converged"]
    e1, f1 = dense.predict(test)
    e2, f2 = cg.predict(test)
    assert np.allclose(f1, f2, atol=1e-5)
    assert np.allclose(e1, e2, atol=1e-5)


def test_gdml_auto_picks_cg_over_the_memory_budget(ethanol):
    train = ethanol[:10]
    small = GDML(sigma=SIGMA, solver="auto").fit(train, progress=False)
    assert small.solver_info_["solver"] == "cholesky"
    with pytest.warns(UserWarning, match="CG stopped"):
        tight = GDML(sigma=SIGMA, solver="auto", memory_budget=1e3, rank=20, max_iter=3)
        tight.fit(train, progress=False)
    assert tight.solver_info_["solver"] == "cg" and not tight.solver_info_["converged"]


def test_gdml_cg_refuses_energy_constraints(ethanol):
    with pytest.raises(ValueError, match="cholesky"):
        GDML(sigma=SIGMA, solver="cg", use_energies_constraint=True).fit(ethanol[:5])


@pytest.mark.gpu
def test_cg_solver_on_cuda_matches_cpu(ethanol):
    train, test = ethanol[:20], load("ethanol_gfn2")[100:105]
    params = dict(sigma=SIGMA, lam=1e-8, solver="cg", rank=200, tol=1e-9)
    cpu = GDML(**params).fit(train, progress=False)
    gpu = GDML(**params, device="cuda").fit(train, progress=False)
    assert gpu.solver_info_["converged"]
    assert np.allclose(cpu.predict(test)[1], gpu.predict(test)[1], atol=1e-6)
