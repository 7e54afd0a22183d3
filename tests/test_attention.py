"""Geometric attention: symmetries, exact forces, batching, attention matrices, toys, estimator."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from mlffkit.data import Dataset
from mlffkit.nn.attention import (
    ATTENTION,
    AttentionResult,
    GeometricAttentionPotential,
    attention_blocks,
)
from mlffkit.nn.attention_toys import (
    bent_triatomic,
    feature_differences,
    order_features,
    torsion_pentamer,
)
from mlffkit.nn.data import GraphData, graph_from_atoms

RNG = np.random.default_rng(7)


def tiny_potential(seed=0, **kwargs) -> GeometricAttentionPotential:
    torch.manual_seed(seed)
    params = dict(n_features=8, n_layers=2, n_rbf=20)
    params.update(kwargs)
    potential = GeometricAttentionPotential(**params).double()
    # non-trivial statistics, so that scale and offsets are exercised too
    offsets = torch.zeros(119, dtype=torch.float64)
    offsets[[1, 6, 8]] = torch.tensor([-13.6, -1029.0, -2041.0], dtype=torch.float64)
    potential.set_energy_statistics(offsets, 0.7)
    return potential


def distorted(name: str, amplitude=0.05) -> Atoms:
    atoms = molecule(name)
    atoms.positions += amplitude * RNG.normal(size=atoms.positions.shape)
    return atoms


def evaluate(potential, atoms, extras=None):
    graph = graph_from_atoms(atoms, None, dtype=torch.float64)
    out = potential(graph, forces=True, extras=extras)
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def potential():
    return tiny_potential()


@pytest.fixture(scope="module")
def ethanol():
    return distorted("CH3CH2OH")


# --------------------------------------------------------------- symmetries and exact forces
def test_rotation_and_translation_invariance(potential, ethanol):
    ref = evaluate(potential, ethanol)
    rot = Rotation.random(random_state=3).as_matrix()
    moved = ethanol.copy()
    moved.positions = ethanol.positions @ rot.T + np.array([3.0, -7.5, 12.0])
    out = evaluate(potential, moved)
    assert abs(out["energy"][0] - ref["energy"][0]) < 1e-9
    assert np.allclose(out["atomic_energies"], ref["atomic_energies"], atol=1e-10)
    # forces rotate with the molecule and do not care about the translation
    assert np.allclose(out["forces"], ref["forces"] @ rot.T, atol=1e-10)
    assert np.abs(ref["forces"]).max() > 1e-3  # not trivially zero


def test_permutation_of_like_atoms(potential, ethanol):
    ref = evaluate(potential, ethanol)
    hydrogens = np.flatnonzero(ethanol.numbers == 1)
    perm = np.arange(len(ethanol))
    perm[hydrogens] = hydrogens[RNG.permutation(len(hydrogens))]
    perm[[0, 1]] = perm[[1, 0]]  # ethanol's two carbons
    assert ethanol.numbers[0] == ethanol.numbers[1] == 6
    out = evaluate(potential, ethanol[perm])
    assert abs(out["energy"][0] - ref["energy"][0]) < 1e-9
    assert np.allclose(out["forces"], ref["forces"][perm], atol=1e-10)
    assert np.allclose(out["atomic_energies"], ref["atomic_energies"][perm], atol=1e-10)


def test_forces_are_minus_the_energy_gradient(ethanol):
    potential = tiny_potential()
    # without the large element offsets, so that rounding does not swamp the differences
    potential.set_energy_statistics(torch.zeros(119), 0.7)
    forces = evaluate(potential, ethanol)["forces"]
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        energies = []
        for sign in (1, -1):
            shifted = ethanol.copy()
            shifted.positions[atom, axis] += sign * h
            energies.append(evaluate(potential, shifted)["energy"][0])
        numeric = -(energies[0] - energies[1]) / (2 * h)
        assert numeric == pytest.approx(forces[atom, axis], rel=1e-7, abs=1e-9)


def test_batch_of_different_molecules_equals_each_alone(potential):
    mols = [distorted("H2O"), distorted("CH3CH2OH"), distorted("C6H6"), distorted("CH4")]
    data = GraphData(Dataset.from_atoms(mols), None, dtype=torch.float64)
    graph, _ = data.batch([0, 1, 2, 3])
    extras = {}
    out = potential(graph, forces=True, extras=extras)
    forces = np.split(out["forces"].detach().numpy(), np.cumsum(graph.n_atoms.numpy())[:-1])
    blocks = attention_blocks(extras[ATTENTION], graph.n_atoms)
    for b, atoms in enumerate(mols):
        alone_extras = {}
        alone = evaluate(potential, atoms, alone_extras)
        assert out["energy"][b].item() == pytest.approx(alone["energy"][0], abs=1e-9)
        assert np.allclose(forces[b], alone["forces"], atol=1e-10)
        for layer in range(potential.n_layers):
            for k in potential.orders:
                assert torch.allclose(
                    blocks[b][layer][k], alone_extras[ATTENTION][layer][k][0], atol=1e-12
                )


def test_separated_molecules_do_not_interact(potential):
    """Without bias the pair filters vanish far away: energies of distant fragments add."""
    water, methane = distorted("H2O"), distorted("CH4")
    far = methane.copy()
    far.positions += [40.0, 0.0, 0.0]
    both = water + far
    extras = {}
    together = evaluate(potential, both, extras)
    e_apart = evaluate(potential, water)["energy"][0] + evaluate(potential, methane)["energy"][0]
    assert together["energy"][0] == pytest.approx(e_apart, abs=1e-9)
    for layer in extras[ATTENTION]:
        for a in layer.values():
            assert torch.count_nonzero(a[0, :3, 3:]) == 0


# --------------------------------------------------------------- the attention matrices
def test_attention_matrices_shapes_symmetry_and_structure(potential):
    mols = [distorted("H2O"), distorted("CH3CH2OH")]
    graph, _ = GraphData(Dataset.from_atoms(mols), None, dtype=torch.float64).batch([0, 1])
    extras = {}
    potential(graph, forces=False, extras=extras)
    attention = extras[ATTENTION]
    assert len(attention) == potential.n_layers
    for layer in attention:
        assert sorted(layer) == [2, 3, 4]
        for a in layer.values():
            assert a.shape == (2, 9, 9)
            assert not a.requires_grad
            assert torch.allclose(a, a.transpose(1, 2), atol=1e-12)  # shared filters
            assert torch.count_nonzero(a[0, 3:, :]) == 0 and torch.count_nonzero(a[0, :, 3:]) == 0
        # no self-pairs in order 2; walks that return to their start in higher orders
        assert torch.count_nonzero(torch.diagonal(layer[2], dim1=1, dim2=2)) == 0
        assert torch.all(torch.diagonal(layer[3][1], 0) > 0)
        # order 3 is a channel average of squares of symmetric matrices: positive semidefinite
        assert torch.linalg.eigvalsh(layer[3][1]).min() > -1e-12
        assert torch.linalg.eigvalsh(layer[2][1]).min() < 0  # order 2 is not (zero trace)


def test_pair_attention_is_a_function_of_distance_only(potential):
    """In a regular tetrahedron-like CH4 all C–H pairs are alike, and so are all H–H pairs."""
    methane = molecule("CH4")
    extras = {}
    evaluate(potential, methane, extras)
    a2 = extras[ATTENTION][0][2][0]
    ch = a2[0, 1:]
    hh = a2[1:, 1:][~torch.eye(4, dtype=torch.bool)]
    assert torch.allclose(ch, ch[0].expand_as(ch), atol=1e-12)
    assert torch.allclose(hh, hh[0].expand_as(hh), atol=1e-12)
    assert not torch.isclose(ch[0], hh[0])


def test_interpret_result(potential, ethanol):
    result = potential.interpret(ethanol)
    assert isinstance(result, AttentionResult)
    direct = evaluate(potential, ethanol)
    assert result.energy == pytest.approx(direct["energy"][0], abs=1e-10)
    assert result.atomic_energies.sum() == pytest.approx(result.energy, abs=1e-9)
    assert np.allclose(result.forces, direct["forces"])
    assert result.symbols == ethanol.get_chemical_symbols()
    assert result.orders == (2, 3, 4) and result.n_layers == 2
    assert np.allclose(result.reference_energies[ethanol.numbers == 6], -1029.0)
    assert np.allclose(
        result.interaction_energies, result.atomic_energies - result.reference_energies
    )
    a = result.matrix(1, 4)
    assert a.shape == (9, 9) and np.allclose(result.matrix(1, 4, symmetrize=True), a)
    with pytest.raises(ValueError, match="layers run from 0 to 1"):
        result.matrix(2, 3)
    with pytest.raises(ValueError, match="not one of the model's orders"):
        result.matrix(0, 5)


def test_bad_input():
    with pytest.raises(ValueError, match="distinct integers >= 2"):
        GeometricAttentionPotential(orders=(1, 2))
    with pytest.raises(ValueError, match="distinct integers >= 2"):
        GeometricAttentionPotential(orders=(2, 2))
    with pytest.raises(ValueError, match="n_layers >= 1"):
        GeometricAttentionPotential(n_layers=0)
    crystal = Atoms("Cu", cell=[3, 3, 3], pbc=True)
    with pytest.raises(ValueError, match="works on molecules only"):
        tiny_potential().interpret(crystal)
    # a graph built with a cutoff for a periodic cell is refused by the network itself
    graph = graph_from_atoms(crystal * (2, 2, 2), 4.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="works on molecules only"):
        tiny_potential()(graph)


# --------------------------------------------------------------- what each order sees
def test_order_3_sees_the_angle_order_2_does_not():
    potential = tiny_potential(seed=1, n_layers=1, n_rbf=31, r_max=3.0)
    for angle in (60.0, 100.0, 180.0):
        diff = feature_differences(potential, bent_triatomic(75.0), bent_triatomic(angle))
        assert diff[2] < 1e-13  # atom 0's distances are the same: exactly blind
        assert diff[3] > 1e-4
    same = feature_differences(potential, bent_triatomic(75.0), bent_triatomic(75.0))
    assert max(same.values()) == 0.0


def test_order_4_sees_the_torsion_orders_2_and_3_do_not():
    potential = tiny_potential(seed=2, n_layers=1, n_rbf=31, r_max=3.0)
    for torsion in (90.0, 180.0):
        diff = feature_differences(potential, torsion_pentamer(0.0), torsion_pentamer(torsion))
        assert diff[2] < 1e-13
        assert diff[4] > 1e-5
        assert diff[3] < 1e-4 * diff[4]  # only Gaussian tails of hops >= sqrt(2) bond
    # the toy geometry: the torsion changes the 3–4 distance and nothing atom 0 sees directly
    cis, trans = torsion_pentamer(0.0), torsion_pentamer(180.0)
    assert np.allclose(cis.get_all_distances()[:3], trans.get_all_distances()[:3])
    assert cis.get_distance(3, 4) == pytest.approx(3.0)
    assert trans.get_distance(3, 4) == pytest.approx(3.0 * np.sqrt(5))


def test_order_features_checks():
    potential = tiny_potential(n_layers=1)
    features = order_features(potential, bent_triatomic(90.0), atom=1)
    assert set(features) == {2, 3, 4} and features[3].shape == (8,)
    with pytest.raises(ValueError, match="structure has 3 atoms"):
        order_features(potential, bent_triatomic(90.0), atom=3)
    with pytest.raises(ValueError, match="layers run from 0 to 0"):
        order_features(potential, bent_triatomic(90.0), layer=1)
    with pytest.raises(ValueError, match=r"\(0, 180\]"):
        bent_triatomic(0.0)


# --------------------------------------------------------------- the estimator
@pytest.fixture(scope="module")
def trained():
    from mlffkit.data import load
    from mlffkit.models.attention import GeometricAttention

    data = load("ethanol_gfn2")
    train, test = data[np.arange(0, 60, 2)], data[np.arange(1, 60, 20)]
    model = GeometricAttention(
        n_features=8,
        n_layers=1,
        n_rbf=16,
        max_epochs=12,
        lr=3e-3,
        batch_size=5,
        device="cpu",
        validation_fraction=0.2,
    )
    model.fit(train, progress=False)
    return model, test


def test_estimator_trains_and_interprets(trained):
    model, test = trained
    mae = model.history_.column("train_force_mae")
    assert mae[-1] < mae[0]
    energies, forces = model.predict(test)
    assert energies.shape == (3,) and forces.shape == (3, 9, 3)
    result = model.interpret(test[0])
    assert result.energy == pytest.approx(energies[0], abs=1e-4)
    assert np.allclose(result.forces, forces[0], atol=1e-4)
    assert result.matrix(0, 2).shape == (9, 9)
    assert "GeomAtt" in model.display_name()
    with pytest.raises(ValueError, match="knows nothing about N"):
        model.interpret(molecule("NH3"))
    with pytest.raises(ValueError, match="one ase.Atoms"):
        model.interpret([test[0]])


def test_estimator_save_load_round_trip(trained, tmp_path):
    from mlffkit.models import load_model
    from mlffkit.models.attention import GeometricAttention

    model, test = trained
    path = model.save(tmp_path / "geomatt.npz")
    loaded = load_model(path)
    assert isinstance(loaded, GeometricAttention)
    assert tuple(loaded.orders) == (2, 3, 4) and loaded.n_features == 8
    e0, f0 = model.predict(test)
    e1, f1 = loaded.predict(test)
    assert np.array_equal(e0, e1) and np.array_equal(f0, f1)
    a, b = model.interpret(test[1]), loaded.interpret(test[1])
    assert np.array_equal(a.matrix(0, 3), b.matrix(0, 3))
    assert np.array_equal(a.atomic_energies, b.atomic_energies)
    with pytest.raises(FileExistsError):
        model.save(path)


def test_unfitted_estimator_refuses_to_interpret():
    from mlffkit.models.attention import GeometricAttention

    with pytest.raises(RuntimeError, match="not trained yet"):
        GeometricAttention().interpret(molecule("H2O"))
