"""BIGDML: minimum-image descriptor, crystal symmetries, the periodic model's physics and errors."""

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, bulk, fcc100
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_forces
from ase.geometry import find_mic, get_distances

import mlffkit
from mlffkit.crystal_symmetry import (
    crystal_symmetries,
    default_tolerance,
    find_crystal_permutations,
    lattice_rotations,
    mean_structure,
)
from mlffkit.data import Dataset
from mlffkit.descriptors.inverse_distances import pair_indices, pair_permutation
from mlffkit.descriptors.periodic import MinimumImage, periodic_inverse_distances
from mlffkit.md import run_md
from mlffkit.models import BIGDML, load_model

SIGMA = 5.0
#: a strongly skewed triclinic cell (rows, Å): naive rounding of fractional coordinates fails here
SKEWED = np.array([[5.0, 0.0, 0.0], [4.1, 3.2, 0.0], [-1.3, 2.6, 4.4]])


@pytest.fixture(scope="module")
def cu():
    return mlffkit.data.load("cu_vacancy")


@pytest.fixture(scope="module")
def model(cu):
    return BIGDML(sigma=SIGMA).fit(cu[:8], progress=False)


def _fcc_vacancy():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    vacancy = atoms.positions[0].copy()
    del atoms[0]
    return atoms, vacancy


def _assert_maps_onto_itself(ops, positions, cell, pbc, atol=1e-6):
    for k in range(len(ops)):
        moved = ops.apply(k, positions)
        gap, _ = find_mic(moved - positions[ops.permutations[k]], cell, pbc)
        assert np.abs(gap).max() < atol


# --------------------------------------------------------------------------- descriptor
def _brute_force_distances(pos, cell, pbc, reach=12):
    """Shortest |r_i - r_j + L| over lattice translations L with up to ``reach`` cells per axis."""
    axes = [range(-reach, reach + 1) if p else [0] for p in pbc]
    shifts = np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T @ cell
    diff = pos[:, None, None] - pos[None, :, None] + shifts  # (n, n, n_shifts, 3)
    return np.linalg.norm(diff, axis=-1).min(axis=-1)


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (True, False, True)])
def test_minimum_image_distances_are_the_shortest_on_a_skewed_cell(pbc):
    rng = np.random.default_rng(0)
    # positions far outside the cell too: unwrapped coordinates must not matter
    pos = rng.uniform(-2, 3, size=(12, 3)) @ SKEWED
    mic = MinimumImage(SKEWED, pbc)
    vec = mic.pair_vectors(torch.as_tensor(pos[None]))[0].numpy()
    i, j = pair_indices(len(pos))
    dist = np.linalg.norm(vec, axis=1)
    np.testing.assert_allclose(dist, _brute_force_distances(pos, SKEWED, pbc)[i, j], atol=1e-10)
    if all(pbc):  # ASE's find_mic is exact for fully periodic cells
        _, ase_dist = get_distances(pos, cell=SKEWED, pbc=pbc)
        np.testing.assert_allclose(dist, ase_dist[i, j], atol=1e-10)
    # each vector is r_i - r_j plus a lattice translation along periodic vectors only
    shift = (vec - (pos[i] - pos[j])) @ np.linalg.inv(SKEWED)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
    assert np.all(np.round(shift)[:, ~np.array(pbc)] == 0)
    # naive rounding of fractional coordinates gives longer vectors for some pairs
    frac = (pos[i] - pos[j]) @ np.linalg.inv(SKEWED)
    frac[:, list(pbc)] -= np.round(frac[:, list(pbc)])
    assert np.any(np.linalg.norm(frac @ SKEWED, axis=1) > dist + 1e-6)


def test_minimum_image_radius_is_half_the_shortest_lattice_translation():
    assert MinimumImage(np.eye(3) * 7.22).radius == pytest.approx(3.61)
    assert MinimumImage(np.diag([7.0, 9.0, 3.0]), (True, True, False)).radius == pytest.approx(3.5)
    # for the primitive fcc cell the shortest translation is a face diagonal, a / sqrt(2)
    prim = bulk("Cu", "fcc", a=3.61)
    assert MinimumImage(prim.cell).radius == pytest.approx(3.61 / np.sqrt(2) / 2)
    assert MinimumImage(np.eye(3), False).radius == np.inf


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False)])
def test_periodic_jacobian_matches_autograd_and_finite_differences(pbc):
    rng = np.random.default_rng(1)
    pos = torch.as_tensor(rng.uniform(0, 1, size=(2, 7, 3)) @ SKEWED)
    x, jac = periodic_inverse_distances(pos, SKEWED, pbc, jacobian=True)
    auto = torch.autograd.functional.jacobian(
        lambda p: periodic_inverse_distances(p[None], SKEWED, pbc)[0], pos[0]
    )
    np.testing.assert_allclose(jac[0].numpy(), auto.numpy(), atol=1e-12)
    h = 1e-6
    for atom, axis in [(0, 0), (3, 1), (6, 2)]:
        step = torch.zeros_like(pos)
        step[:, atom, axis] = h
        fd = (
            periodic_inverse_distances(pos + step, SKEWED, pbc)
            - periodic_inverse_distances(pos - step, SKEWED, pbc)
        ) / (2 * h)
        np.testing.assert_allclose(jac[:, :, atom, axis].numpy(), fd.numpy(), atol=1e-7)


def test_descriptor_ignores_lattice_translations_of_single_atoms_and_of_all_atoms(cu):
    pos = cu.positions[:3].copy()
    cell, pbc = cu.cell[0], cu.pbc[0]
    x = periodic_inverse_distances(torch.as_tensor(pos), cell, pbc)
    moved = pos + np.array([0.7, -1.9, 11.3])  # any rigid shift
    moved[:, 5] += cell[0] - 2 * cell[2]  # one atom by lattice vectors
    np.testing.assert_allclose(
        periodic_inverse_distances(torch.as_tensor(moved), cell, pbc).numpy(), x.numpy(), atol=1e-12
    )


def test_pair_permutation_applies_to_the_periodic_descriptor(cu):
    pos = torch.as_tensor(cu.positions[:1])
    mic = MinimumImage(cu.cell[0], cu.pbc[0])
    perm = np.random.default_rng(2).permutation(len(cu.numbers))
    x = mic.inverse_distances(pos)
    np.testing.assert_allclose(
        mic.inverse_distances(pos[:, perm]).numpy(), x[:, pair_permutation(perm)].numpy()
    )


def test_too_small_cell_is_refused_with_the_reason_and_the_fix():
    small = bulk("Cu", "fcc", a=3.61, cubic=True)  # 4 atoms: R_mic = 1.8 Å < first shell
    with pytest.raises(ValueError, match=r"too small.*R_mic = 1\.80.*repeat\(\(2, 2, 2\)\)"):
        MinimumImage(small.cell).check_cell_size(small.positions)
    MinimumImage(small.cell * 2).check_cell_size(small.repeat((2, 2, 2)).positions)
    with pytest.raises(ValueError, match="linearly dependent"):
        MinimumImage([[3.0, 0, 0], [6.0, 0, 0], [0, 0, 3.0]])


# --------------------------------------------------------------------------- symmetries
def test_lattice_point_groups():
    assert len(lattice_rotations(np.eye(3) * 7.22)) == 48
    # the primitive cell: a skewed basis of the same lattice
    assert len(lattice_rotations(bulk("Cu", "fcc", a=3.61).cell)) == 48
    assert len(lattice_rotations(bulk("Mg", "hcp", a=3.2, c=5.2).cell)) == 24
    assert len(lattice_rotations(np.diag([7.0, 7.0, 20.0]), (True, True, False))) == 16
    rotations = lattice_rotations(np.diag([7.0, 8.0, 9.0]))
    assert len(rotations) == 8
    np.testing.assert_allclose(rotations[0], np.eye(3))
    with pytest.raises(ValueError, match="at least two"):
        lattice_rotations(np.eye(3) * 5, (True, False, False))


def test_fcc_vacancy_keeps_the_48_operations_that_fix_the_vacancy():
    atoms, vacancy = _fcc_vacancy()
    tol = default_tolerance(atoms.positions, atoms.numbers, atoms.cell)
    assert tol == pytest.approx(0.4 * 3.61 / np.sqrt(2))  # 0.4 × the nearest-neighbour distance
    ops = crystal_symmetries(atoms.positions, atoms.numbers, atoms.cell, atoms.pbc)
    assert len(ops) == 48 and ops.point_group_order() == 48
    np.testing.assert_array_equal(ops.permutations[0], np.arange(len(atoms)))
    _assert_maps_onto_itself(ops, atoms.positions, atoms.cell, atoms.pbc)
    for k in range(len(ops)):  # the stabiliser of the vacancy: it stays where it is
        gap, _ = find_mic(ops.apply(k, vacancy) - vacancy, atoms.cell)
        assert np.abs(gap).max() < 1e-9
        np.testing.assert_allclose(ops.rotations[k] @ ops.rotations[k].T, np.eye(3), atol=1e-12)
    perfect = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    full = crystal_symmetries(perfect.positions, perfect.numbers, perfect.cell, perfect.pbc)
    assert len(full) == 32 * 48  # lattice translations of the supercell × O_h
    _assert_maps_onto_itself(full, perfect.positions, perfect.cell, perfect.pbc)


def test_adatom_on_fcc100_has_the_c4v_group_of_its_hollow_site():
    slab = fcc100("Cu", size=(3, 3, 3), a=3.61, vacuum=5.0)
    add_adsorbate(slab, "Pt", 1.7, "hollow")
    ops = crystal_symmetries(slab.positions, slab.numbers, slab.cell, slab.pbc)
    assert len(ops) == 8
    _assert_maps_onto_itself(ops, slab.positions, slab.cell, slab.pbc)
    pt = len(slab) - 1
    assert np.all(ops.permutations[:, pt] == pt)  # only like atoms are swapped


def test_mean_structure_removes_thermal_noise_drift_and_wrapping():
    atoms, _ = _fcc_vacancy()
    rng = np.random.default_rng(3)
    frames = atoms.positions + rng.normal(0, 0.15, size=(40, len(atoms), 3))
    frames += rng.uniform(-6, 6, size=(40, 1, 3))  # the crystal drifts by more than R_mic
    wrapped = np.array(
        [atoms.cell.cartesian_positions(atoms.cell.scaled_positions(f) % 1.0) for f in frames]
    )
    ref = mean_structure(wrapped, atoms.cell, True)
    gap, _ = find_mic(ref - ref[0] - (atoms.positions - atoms.positions[0]), atoms.cell)
    assert np.abs(gap - gap.mean(0)).max() < 0.15
    # one thermal frame is not symmetric within a tight tolerance, the mean of 40 is
    assert len(crystal_symmetries(wrapped[0], atoms.numbers, atoms.cell, tol=0.2)) < 48
    perms = find_crystal_permutations(wrapped, atoms.numbers, atoms.cell, tol=0.2)
    assert len(perms) == 48


def test_symmetries_of_the_bundled_copper_data(cu):
    perms = find_crystal_permutations(cu.positions[:20], cu.numbers, cu.cell[0], cu.pbc[0])
    assert len(perms) == 48


# --------------------------------------------------------------------------- the model
def test_model_uses_the_crystal_group_and_fits_its_training_forces(model, cu):
    assert model.model_type == "BIGDML" and len(model.permutations_) == 48
    np.testing.assert_allclose(model.cell_, cu.cell[0])
    _, forces = model.predict(cu[:8])
    assert np.abs(forces - cu.forces[:8]).max() < 1e-3


def test_forces_are_minus_the_gradient_of_the_energy(model, cu):
    pos = cu.positions[100]
    h = 1e-4
    _, forces = model.predict(pos)
    for atom, axis in [(0, 0), (7, 1), (30, 2)]:
        step = np.zeros_like(pos)
        step[atom, axis] = h
        e_plus, _ = model.predict(pos + step)
        e_minus, _ = model.predict(pos - step)
        assert -(e_plus[0] - e_minus[0]) / (2 * h) == pytest.approx(forces[0, atom, axis], abs=1e-6)


def test_lattice_translation_and_wrapping_leave_energy_and_forces_unchanged(model, cu):
    atoms = cu[200]
    energy, forces = model.predict(atoms)
    shifted = atoms.copy()
    shifted.positions += cu.cell[0].sum(0) * 0.37 + np.array([0.1, -0.4, 2.0])  # any rigid shift
    shifted.positions[3] += cu.cell[0][1]  # and one atom by a lattice vector
    wrapped = atoms.copy()
    wrapped.wrap()
    assert np.abs(wrapped.positions - atoms.positions).max() > 1.0  # wrapping moved atoms
    for other in (shifted, wrapped):
        e, f = model.predict(other)
        assert e[0] == pytest.approx(energy[0], abs=1e-9)
        np.testing.assert_allclose(f, forces, atol=1e-9)


def test_symmetry_operations_rotate_and_permute_the_forces(model, cu):
    pos = cu.positions[300]
    energy, forces = model.predict(pos)
    ops = crystal_symmetries(
        mean_structure(cu.positions[:8], cu.cell[0]), cu.numbers, cu.cell[0], cu.pbc[0]
    )
    for k in (5, 17, 40):
        perm = ops.permutations[k]
        # the frame moved by the operation: the same energy, the forces rotated with it
        e, f = model.predict(ops.apply(k, pos))
        assert e[0] == pytest.approx(energy[0], abs=1e-9)
        np.testing.assert_allclose(f[0], forces[0] @ ops.rotations[k].T, atol=1e-9)
        # the frame relabelled: exact invariance comes from the symmetrised kernel
        e, f = model.predict(pos[perm])
        assert e[0] == pytest.approx(energy[0], abs=1e-9)
        np.testing.assert_allclose(f[0], forces[0][perm], atol=1e-9)
    plain = BIGDML(sigma=SIGMA, permutations=None).fit(cu[:8], progress=False)
    assert abs(plain.predict(pos[ops.permutations[5]])[0][0] - plain.predict(pos)[0][0]) > 1e-4


def test_replica_other_cells_and_molecules_are_refused(model, cu):
    atoms = cu[10]
    with pytest.raises(
        ValueError, match=r"248 atoms.*2×2×2 replica.*global model of one supercell"
    ):
        model.predict(atoms.repeat((2, 2, 2)))
    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.01, scale_atoms=True)
    with pytest.raises(ValueError, match="minimum-image descriptor is defined by that lattice"):
        model.predict(strained)
    molecule = atoms.copy()
    molecule.pbc = False
    with pytest.raises(ValueError, match="not periodic"):
        model.predict(molecule)
    with pytest.raises(ValueError, match="30 atoms"):
        model.predict(atoms[:30])


def test_training_data_problems_are_refused(cu):
    with pytest.raises(ValueError, match="no periodic cell"):
        BIGDML(sigma=SIGMA).fit(
            Dataset(cu.numbers, cu.positions[:3], cu.energies[:3], cu.forces[:3])
        )
    cells = np.repeat(cu.cell[:1], 3, axis=0)
    cells[2] *= 1.02
    mixed = Dataset(
        cu.numbers, cu.positions[:3], cu.energies[:3], cu.forces[:3], cell=cells, pbc=True
    )
    with pytest.raises(ValueError, match="not all in one cell: frame 2"):
        BIGDML(sigma=SIGMA).fit(mixed)
    small = bulk("Cu", "fcc", a=3.61, cubic=True)
    frames = []
    for seed in range(3):
        at = small.copy()
        at.rattle(0.05, seed=seed)
        at.calc = EMT()
        at.get_forces()
        frames.append(at)
    with pytest.raises(ValueError, match="too small for the minimum-image convention"):
        BIGDML(sigma=SIGMA).fit(frames)
    with pytest.raises(ValueError, match="symmetry_tol"):
        BIGDML(sigma=SIGMA, symmetry_tol=-1).fit(cu[:3])


def test_save_load_round_trip(model, cu, tmp_path):
    path = model.save(tmp_path / "cu.npz")
    loaded = load_model(path)
    assert isinstance(loaded, BIGDML) and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.cell_, model.cell_)
    np.testing.assert_array_equal(loaded.pbc_, model.pbc_)
    np.testing.assert_array_equal(loaded.permutations_, model.permutations_)
    for a, b in zip(model.predict(cu[20:24]), loaded.predict(cu[20:24]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError, match="replica"):
        loaded.predict(cu[20].repeat((1, 1, 2)))


def test_calculator_forces_match_numerical_forces_and_drive_md(model, cu):
    atoms = cu[400]
    atoms.calc = model.calculator()
    assert atoms.get_potential_energy() == pytest.approx(model.predict(atoms)[0][0])
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), numerical, atol=1e-6)
    result = run_md(atoms, steps=20, timestep_fs=2.0, temperature_K=700, interval=5, progress=False)
    assert result.stable and len(result.to_dataset()) == 5


def test_bundled_slab_has_the_c4v_symmetry_of_its_adsorption_site():
    slab = mlffkit.data.load("pt_cu100")
    assert len(slab.numbers) == 37 and slab.pbc[0].tolist() == [True, True, False]
    model = BIGDML(sigma=SIGMA).fit(slab[:10], progress=False)
    assert len(model.permutations_) == 8
    atoms = slab[100]
    energy, forces = model.predict(atoms)
    moved = atoms.copy()
    moved.positions += atoms.cell[0] - 2 * atoms.cell[1] + np.array([0.3, 0.2, 5.0])
    e, f = model.predict(moved)
    assert e[0] == pytest.approx(energy[0], abs=1e-9)
    np.testing.assert_allclose(f, forces, atol=1e-9)
