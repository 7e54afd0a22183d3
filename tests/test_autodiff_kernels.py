"""GDML kernels by automatic differentiation: against the analytic kernel, and the model's physics."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import mlffkit
from mlffkit.descriptors import inverse_distances, pair_permutation
from mlffkit.kernels.autodiff import (
    AutoDiffKernelOperator,
    GaussianKernel,
    Matern52Kernel,
    hessian_blocks,
    make_kernel,
)
from mlffkit.kernels.gdml import force_field_kernel
from mlffkit.models import GDML, AutoDiffGDML, load_model
from mlffkit.models.autodiff_gdml import PairDescriptor
from mlffkit.symmetry import close_group

FIXTURE = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"
SIGMA = 5.0


@pytest.fixture(scope="module")
def ethanol():
    """24 frames of 500 K ethanol labelled with GFN2-xTB: 16 to train, 8 to test."""
    ds = mlffkit.data.load(FIXTURE)
    return ds[:16], ds[16:]


@pytest.fixture(scope="module")
def group(ethanol):
    """Methyl rotation and the CH2/methyl reflection of the fixture's ethanol (order 6)."""
    numbers = ethanol[0].numbers
    h = np.flatnonzero(numbers == 1)
    rotation, reflection = np.arange(9), np.arange(9)
    rotation[h[:3]] = np.roll(h[:3], 1)
    reflection[h[:2]] = h[:2][::-1]
    return close_group([rotation, reflection])


def _inverse_distances(r):
    """The GDML descriptor of one frame, written as a user would: ten lines or fewer."""
    i, j = torch.tril_indices(len(r), len(r), offset=-1, device=r.device)
    return 1.0 / torch.linalg.vector_norm(r[i] - r[j], dim=-1)


def _analytic(positions, perms):
    x, jac = inverse_distances(torch.as_tensor(positions), jacobian=True)
    perm_index = None
    if perms is not None:
        perm_index = torch.as_tensor(np.stack([pair_permutation(p) for p in perms]))
    return force_field_kernel(x, jac.flatten(2), x, jac.flatten(2), SIGMA, perm_index)


def _close(a, b, tol=1e-10):
    """Agreement to ``tol`` relative to the largest entry."""
    a, b = np.asarray(a), np.asarray(b)
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= tol * scale, np.abs(a - b).max() / scale


# --------------------------------------------------------------------------- kernel
@pytest.mark.parametrize("kernel", [Matern52Kernel(2.0), GaussianKernel(2.0)])
def test_descriptor_space_hessian_is_finite_and_exact_at_zero_distance(kernel):
    """Where AD through |x - x'| gives NaN, the kernel of s = |x - x'|² gives the exact limit."""
    x = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    H = torch.func.jacfwd(torch.func.jacrev(kernel, argnums=0), argnums=1)(x, x.clone())
    # Matérn 5/2: H(x, x) = (a²/3) I = (5 / 3σ²) I; Gaussian: I / σ²
    expected = 5.0 / (3.0 * 4.0) if isinstance(kernel, Matern52Kernel) else 1.0 / 4.0
    np.testing.assert_allclose(H.numpy(), expected * np.eye(3), rtol=1e-14, atol=1e-15)


def test_naive_autodiff_of_the_matern_kernel_fails_at_zero_distance():
    """What the s = ρ² formulation avoids: NaN through sqrt, a silent 0 through vector_norm."""
    kernel = Matern52Kernel(2.0)
    x = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)

    def hessian(distance):
        def k(a, b):
            ar = np.sqrt(5.0) / kernel.sigma * distance(a - b)
            return (1 + ar + ar**2 / 3) * torch.exp(-ar)

        return torch.func.jacfwd(torch.func.jacrev(k, argnums=0), argnums=1)(x, x.clone())

    assert torch.isnan(hessian(lambda u: torch.sqrt((u * u).sum()))).all()
    assert (hessian(torch.linalg.vector_norm) == 0).all()  # silently wrong: (5/12) I is right


def test_make_kernel_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown kernel"):
        make_kernel("laplacian", 1.0)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        make_kernel("matern52", -1.0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_dense_ad_blocks_equal_the_analytic_gdml_kernel(ethanol, group, symmetric):
    """jacfwd(jacrev(k(D(r), D(r')))) = J^T H J, diagonal blocks (r = r') included."""
    positions = ethanol[0].positions[:4]
    perms = group if symmetric else None
    R = torch.as_tensor(positions)
    auto = hessian_blocks(_inverse_distances, Matern52Kernel(SIGMA), R, R, perms).numpy()
    analytic = _analytic(positions, perms).numpy()
    assert np.isfinite(auto).all()
    _close(auto, analytic)
    _close(auto[:27, :27], analytic[:27, :27])  # a diagonal block on its own


@pytest.mark.parametrize("symmetric", [False, True])
def test_operator_products_columns_and_diagonal_match_the_analytic_kernel(
    ethanol, group, symmetric
):
    positions = ethanol[0].positions[:6]
    perms = group if symmetric else None
    op = AutoDiffKernelOperator(
        _inverse_distances, Matern52Kernel(SIGMA), torch.as_tensor(positions), perms
    )
    analytic = _analytic(positions, perms)
    n = analytic.shape[0]
    assert op.shape == (n, n) and op.dtype == torch.float64
    V = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _close(op.matmat(V), analytic @ V)
    _close(op.matmat(V[:, :1]), analytic @ V[:, :1])
    index = torch.tensor([0, 5, 27, 80, n - 1])
    _close(op.columns(index), analytic[:, index])
    _close(op.diagonal(), analytic.diagonal())
    _close(op.to_dense(), analytic)


@pytest.mark.parametrize(
    ("descriptor", "kernel"),
    [("coulomb_matrix", GaussianKernel(30.0)), ("exp_distances", Matern52Kernel(0.5))],
)
def test_operator_agrees_with_dense_blocks_for_other_descriptors(
    ethanol, group, descriptor, kernel
):
    """Matrix-free products and the naive jacfwd(jacrev) blocks: two independent AD routes."""
    R = torch.as_tensor(ethanol[0].positions[:4])
    fn = PairDescriptor(descriptor, ethanol[0].numbers)
    dense = hessian_blocks(fn, kernel, R, R, group)
    op = AutoDiffKernelOperator(fn, kernel, R, group)
    V = torch.randn(len(dense), 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _close(op.to_dense(), dense)
    _close(op.matmat(V), dense @ V)
    _close(op.diagonal(), dense.diagonal())
    _close(dense, dense.T)  # symmetric: the descriptor only reorders under the permutations


def test_operator_rejects_a_descriptor_that_permutations_do_not_just_reorder(ethanol, group):
    def weighted(r):  # weights pairs by atom index: swapping hydrogens changes the values
        i, j = torch.tril_indices(len(r), len(r), offset=-1, device=r.device)
        return (i + 1.0) / torch.linalg.vector_norm(r[i] - r[j], dim=-1)

    R = torch.as_tensor(ethanol[0].positions[:3])
    with pytest.raises(ValueError, match="not compatible with the atom permutation"):
        AutoDiffKernelOperator(weighted, Matern52Kernel(SIGMA), R, group)
    AutoDiffKernelOperator(weighted, Matern52Kernel(SIGMA), R)  # fine without symmetries


# --------------------------------------------------------------------------- the model
@pytest.mark.parametrize("permutations", [None, "auto"])
def test_model_on_inverse_distances_predicts_as_analytic_gdml(ethanol, permutations):
    train, test = ethanol
    kwargs = {"sigma": SIGMA, "lam": 1e-8, "permutations": permutations}
    auto = AutoDiffGDML(**kwargs).fit(train, progress=False)
    ref = GDML(**kwargs).fit(train, progress=False)
    np.testing.assert_array_equal(auto.permutations_, ref.permutations_)
    energies, forces = auto.predict(test)
    ref_energies, ref_forces = ref.predict(test)
    _close(forces, ref_forces, 1e-8)
    np.testing.assert_allclose(energies, ref_energies, rtol=0, atol=1e-8)
    assert auto.integration_constant_ == pytest.approx(ref.integration_constant_, abs=1e-8)


def test_cg_solver_gives_the_cholesky_model(ethanol):
    train, test = ethanol
    kwargs = {"sigma": SIGMA, "lam": 1e-6, "permutations": None, "descriptor": "exp_distances"}
    dense = AutoDiffGDML(**kwargs).fit(train[:8], progress=False)
    cg = AutoDiffGDML(**kwargs, solver="cg", tol=1e-10, rank=50)
    cg.fit(train[:8], progress=False)
    assert cg.solver_info_["converged"] and cg.solver_info_["solver"] == "cg"
    _close(cg.predict(test)[1], dense.predict(test)[1], 1e-7)


@pytest.fixture(scope="module", params=["exp_distances", "coulomb_matrix", "custom"])
def other_model(request, ethanol):
    train, _ = ethanol
    if request.param == "custom":  # a user's function: exp(-r²/2) of the pair distances

        def descriptor(r):
            i, j = torch.tril_indices(len(r), len(r), offset=-1, device=r.device)
            return torch.exp(-0.5 * ((r[i] - r[j]) ** 2).sum(-1))

        return AutoDiffGDML(sigma=1.0, descriptor=descriptor).fit(train, progress=False)
    sigma = {"exp_distances": 0.5, "coulomb_matrix": 20.0}[request.param]
    return AutoDiffGDML(sigma=sigma, descriptor=request.param).fit(train, progress=False)


def test_forces_are_minus_the_energy_gradient(other_model, ethanol):
    R0 = ethanol[1].positions[0]
    _, F0 = other_model.predict(R0)
    h = 1e-4
    shifts = h * np.eye(R0.size).reshape(R0.size, *R0.shape)
    e_plus, _ = other_model.predict(R0 + shifts)
    e_minus, _ = other_model.predict(R0 - shifts)
    fd = -(e_plus - e_minus).reshape(R0.shape) / (2 * h)
    _close(fd, F0[0], 1e-6)


def test_energies_invariant_forces_covariant_under_rotation_and_translation(other_model, ethanol):
    R = ethanol[1].positions[:3]
    Q = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    moved = R @ Q.T + np.array([1.5, -2.0, 0.7])
    e, f = other_model.predict(R)
    e_moved, f_moved = other_model.predict(moved)
    np.testing.assert_allclose(e_moved, e, rtol=0, atol=1e-9)
    _close(f_moved, f @ Q.T, 1e-9)


def test_model_learns_the_forces(other_model, ethanol):
    """The fitted model reproduces its training forces and beats predicting zero on test."""
    train, test = ethanol
    _, f_train = other_model.predict(train)
    _close(f_train, train.forces, 1e-3)
    assert other_model.score(test) > 0.5


def test_calculator_matches_predict(other_model, ethanol):
    atoms = ethanol[1][0]
    atoms.calc = other_model.calculator()
    e, f = other_model.predict(atoms)
    assert atoms.get_potential_energy() == pytest.approx(e[0], abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), f[0], atol=1e-12)


# --------------------------------------------------------------------------- persistence
def test_save_and_load_round_trip(ethanol, tmp_path):
    train, test = ethanol
    model = AutoDiffGDML(sigma=20.0, descriptor="coulomb_matrix").fit(train, progress=False)
    path = model.save(tmp_path / "ad.npz")
    with pytest.raises(FileExistsError):
        model.save(path)
    loaded = load_model(path, batch_size=3)
    assert isinstance(loaded, AutoDiffGDML) and loaded.descriptor == "coulomb_matrix"
    assert loaded.sigma == 20.0 and loaded.batch_size == 3
    np.testing.assert_array_equal(loaded.permutations_, model.permutations_)
    e0, f0 = model.predict(test)
    e1, f1 = loaded.predict(test)
    np.testing.assert_array_equal(e1, e0)
    np.testing.assert_array_equal(f1, f0)


def test_saving_a_custom_descriptor_is_refused_clearly(ethanol, tmp_path):
    model = AutoDiffGDML(sigma=SIGMA, descriptor=_inverse_distances, permutations=None)
    model.fit(ethanol[0][:4], progress=False)
    with pytest.raises(ValueError, match="custom descriptor function"):
        model.save(tmp_path / "custom.npz")
    assert not (tmp_path / "custom.npz").exists()


# --------------------------------------------------------------------------- bad input
def _self_distance(r):  # includes the pair (i, i): 1/0
    i, j = torch.tril_indices(len(r), len(r), offset=0, device=r.device)
    return 1.0 / torch.linalg.vector_norm(r[i] - r[j], dim=-1)


def _matrix(r):  # (N, N) instead of a vector
    return torch.cdist(r, r)


def _not_differentiable(r):  # finite values, infinite derivative of sqrt at 0
    return torch.sqrt(torch.abs(r[:, 0] - r[0, 0]))


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        (_self_distance, "not finite"),
        (_matrix, "floating-point torch vector"),
        (_not_differentiable, "derivative is not finite"),
        (lambda r: r.numpy().ravel(), "floating-point torch vector"),
        (lambda r: _inverse_distances(r).float(), "keep the dtype"),
        ("distances", "unknown descriptor"),
        (42, "descriptor must be"),
    ],
)
def test_bad_descriptors_are_refused_with_a_clear_message(ethanol, descriptor, message):
    with pytest.raises(ValueError, match=message):
        AutoDiffGDML(sigma=SIGMA, descriptor=descriptor, permutations=None).fit(
            ethanol[0][:3], progress=False
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sigma": 0.0}, "sigma must be"),
        ({"sigma": 1.0, "kernel": "laplacian"}, "unknown kernel"),
        ({"sigma": 1.0, "solver": "lu"}, "unknown solver"),
        ({"sigma": 1.0, "permutations": "all"}, "not understood"),
    ],
)
def test_bad_parameters_are_refused(ethanol, params, message):
    with pytest.raises(ValueError, match=message):
        AutoDiffGDML(**params).fit(ethanol[0][:3], progress=False)


def test_builtin_descriptors_share_the_pair_order_of_inverse_distances(ethanol):
    R = torch.as_tensor(ethanol[0].positions[0])
    numbers = ethanol[0].numbers
    inv = inverse_distances(R[None])[0]
    np.testing.assert_allclose(PairDescriptor("inverse_distances", numbers)(R), inv, rtol=1e-15)
    i, j = np.tril_indices(9, -1)
    zz = torch.as_tensor(numbers[i] * numbers[j], dtype=torch.float64)
    np.testing.assert_allclose(PairDescriptor("coulomb_matrix", numbers)(R), zz * inv, rtol=1e-15)
    np.testing.assert_allclose(
        PairDescriptor("exp_distances", numbers)(R), torch.exp(-1.0 / inv), rtol=1e-15
    )


@pytest.mark.slow
def test_benchmark_script_runs_and_its_methods_agree(tmp_path):
    """``benchmarks/autodiff_kernels.py`` end to end on a tiny size: naive, matrix-free, analytic."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ad.json"
    args = [sys.executable, str(root / "benchmarks" / "autodiff_kernels.py"), "--sizes", "3",
            "--n-predict", "2", "--permutations", "auto", "--json", str(out)]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, cwd=root, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert {r["method"] for r in results} == {"naive AD", "matrix-free AD", "analytic"}
    for r in results:
        assert r["max_rel_deviation"] < 1e-10
        assert r["product_s"] > 0 and r["predict_s"] > 0 and r["product_peak_mb"] >= 0
    assert "max deviation from analytic" in run.stdout
