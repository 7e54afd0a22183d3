"""mlffkit.nn: neighbour lists, graphs, SchNet physics, the trainer and the SchNet estimator."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import primitive_neighbor_list
from scipy.spatial.transform import Rotation

from mlffkit.data import Dataset, load
from mlffkit.models import SchNet, load_model
from mlffkit.models.neural import energy_statistics
from mlffkit.nn import GraphData, SchNetPotential, Trainer, graph_from_atoms, neighbor_list


# ---------------------------------------------------------------------------- neighbour lists
def _pairs(i, j, shifts):
    return sorted(zip(i.tolist(), j.tolist(), *shifts.T.tolist(), strict=True))


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (False, True, False)])
def test_neighbor_list_matches_ase_with_several_images(pbc):
    # a primitive fcc cell (2.5 Å vectors) is much smaller than the 5 Å cutoff
    atoms = bulk("Cu", "fcc", a=3.6) * (1, 1, 2)
    atoms.rattle(0.05, seed=1)
    i, j, s = neighbor_list(atoms.positions, 5.0, atoms.cell.array, pbc)
    ia, ja, sa = primitive_neighbor_list(
        "ijS", pbc, atoms.cell.array, atoms.positions, 5.0, self_interaction=False
    )
    assert len(i) > 5 * len(atoms)  # several images of each neighbour are involved
    assert _pairs(i, j, s) == _pairs(ia, ja, sa)


@pytest.mark.parametrize("repeat", [1, 8])  # 9 atoms: all distances; 72: a cell list
def test_neighbor_list_of_molecules_small_and_large(repeat):
    mol = molecule("CH3CH2OH")
    mol = mol + sum((mol.copy() for _ in range(repeat - 1)), Atoms())
    mol.positions[9:] += np.repeat(np.arange(1, repeat), 9)[:, None] * [2.1, 0.7, 0.0]
    i, j, s = neighbor_list(mol.positions, 3.0)
    ia, ja = primitive_neighbor_list("ij", [False] * 3, np.zeros((3, 3)), mol.positions, 3.0)
    assert len(ia) > 0 and sorted(zip(i, j, strict=True)) == sorted(zip(ia, ja, strict=True))


def test_neighbor_list_of_a_molecule_and_all_pairs():
    mol = molecule("CH3CH2OH")
    i, j, s = neighbor_list(mol.positions, 2.0)
    ia, ja = primitive_neighbor_list("ij", [False] * 3, np.zeros((3, 3)), mol.positions, 2.0)
    assert sorted(zip(i, j, strict=True)) == sorted(zip(ia, ja, strict=True))
    assert not s.any()
    i, j, _ = neighbor_list(mol.positions, None)
    assert len(i) == 9 * 8 and not np.any(i == j)


def test_neighbor_list_bad_input():
    with pytest.raises(ValueError, match="infinitely many"):
        neighbor_list(np.zeros((2, 3)), None, np.eye(3) * 5, True)
    with pytest.raises(ValueError, match="positive distance"):
        neighbor_list(np.zeros((2, 3)), -1.0)
    with pytest.raises(ValueError, match="non-finite|NaN"):
        neighbor_list(np.full((2, 3), np.nan), 5.0)
    with pytest.raises(ValueError, match="no cell"):
        neighbor_list(np.zeros((2, 3)), 5.0, None, True)


# ---------------------------------------------------------------------------- SchNet physics
@pytest.fixture(scope="module")
def potential():
    torch.manual_seed(0)
    pot = SchNetPotential(n_features=16, n_interactions=2, cutoff=4.0, n_rbf=20).double()
    # random offsets and scale, so that the tests also see the energy statistics
    pot.set_energy_statistics(torch.randn(119), 0.7)
    return pot


def _energy_forces(pot, atoms, cutoff=4.0, route="autograd"):
    graph = graph_from_atoms(atoms, cutoff, dtype=torch.float64)
    out = pot(graph) if route == "autograd" else pot.energy_and_forces(graph)
    return float(out["energy"][0].detach()), out["forces"].detach().numpy()


ROUTES = pytest.mark.parametrize("route", ["autograd", "analytic"])


def _ethanol():
    return load("ethanol_gfn2")[7]


@ROUTES
def test_energy_invariant_and_forces_equivariant(potential, route):
    atoms = _ethanol()
    e0, f0 = _energy_forces(potential, atoms, route=route)
    rot = Rotation.random(random_state=3).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + np.array([3.0, -1.0, 7.5])
    e1, f1 = _energy_forces(potential, moved, route=route)
    assert e1 == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(f1, f0 @ rot.T, atol=1e-10)
    # swap the two carbons' hydrogens of the methyl group (like atoms)
    perm = np.arange(len(atoms))
    hydrogens = np.flatnonzero(atoms.numbers == 1)
    perm[hydrogens[0]], perm[hydrogens[1]] = hydrogens[1], hydrogens[0]
    e2, f2 = _energy_forces(potential, atoms[perm], route=route)
    assert e2 == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(f2, f0[perm], atol=1e-10)
    # and the model is not trivially constant: moving an atom changes the energy
    stretched = atoms.copy()
    stretched.positions[0] += [0.1, 0.0, 0.0]
    assert abs(_energy_forces(potential, stretched, route=route)[0] - e0) > 1e-4


@ROUTES
def test_forces_are_minus_the_energy_gradient(potential, route):
    atoms = _ethanol()
    _, forces = _energy_forces(potential, atoms, route=route)
    h = 1e-5
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for d in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, d] += h
            minus.positions[a, d] -= h
            numeric[a, d] = -(
                _energy_forces(potential, plus)[0] - _energy_forces(potential, minus)[0]
            ) / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-7)
    assert np.abs(forces).max() > 1e-3


def _cu_cell():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.08, seed=4)
    return atoms


def test_periodic_supercell_energy_is_extensive(potential):
    cell = _cu_cell()  # 3.6 Å cube: the 4 Å cutoff reaches beyond it
    e1, f1 = _energy_forces(potential, cell)
    big = cell * (2, 2, 2)
    e8, f8 = _energy_forces(potential, big)
    assert e8 == pytest.approx(8 * e1, rel=1e-10)
    np.testing.assert_allclose(f8[: len(cell)], f1, atol=1e-10)


@ROUTES
def test_stress_matches_finite_differences(potential, route):
    atoms = _cu_cell()
    graph = graph_from_atoms(atoms, 4.0, dtype=torch.float64)
    if route == "autograd":
        out = potential(graph, stress=True)
    else:
        out = potential.energy_and_forces(graph, stress=True)
    stress = out["stress"][0].detach().numpy()
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    numeric = np.zeros(6)
    h = 1e-6
    for k, (a, b) in enumerate(voigt):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * h / (1 if a == b else 2)
            strain[b, a] += 0 if a == b else sign * h / 2
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            energies.append(_energy_forces(potential, moved)[0])
        numeric[k] = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    np.testing.assert_allclose(stress, numeric, atol=1e-8)
    assert np.abs(stress).max() > 1e-5
    with pytest.raises(ValueError, match="periodic in all three"):
        potential(graph_from_atoms(_ethanol(), 4.0, dtype=torch.float64), stress=True)
    with pytest.raises(ValueError, match="periodic in all three"):
        potential.energy_and_forces(
            graph_from_atoms(_ethanol(), 4.0, dtype=torch.float64), stress=True
        )


def _assert_same_outputs(a, b, atol):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(
            a[key].detach().numpy(), b[key].detach().numpy(), atol=atol, err_msg=key
        )


def test_analytic_forces_equal_autograd_on_every_kind_of_graph(potential):
    """SchNet's hand-written backward pass (mlffkit.nn.schnet_forces) against autograd."""
    structures = [
        _ethanol(),
        molecule("CH4"),
        _cu_cell(),
        molecule("H2O"),
        Atoms("C", cell=[12.0] * 3),
    ]
    for s in structures:
        s.calc = None
        if not s.pbc.any():
            s.cell = [12.0, 12.0, 12.0]
    # a batch (summed by index_add_), each structure alone (small ones by one-hot products),
    # and a lone atom without any edge
    graph, _ = GraphData(Dataset.from_atoms(structures), 4.0, dtype=torch.float64).batch(range(5))
    _assert_same_outputs(potential.energy_and_forces(graph), potential(graph), atol=1e-11)
    for atoms in structures:
        graph = graph_from_atoms(atoms, 4.0, dtype=torch.float64)
        stress = bool(atoms.pbc.all())
        _assert_same_outputs(
            potential.energy_and_forces(graph, stress=stress),
            potential(graph, stress=stress),
            atol=1e-11,
        )
    # edges beyond the model's cutoff (a graph built for 6 Å) add nothing, as in the network
    ethanol = _ethanol()
    ethanol.positions *= 1.8  # spread out beyond 4 Å
    wide, tight = (
        graph_from_atoms(ethanol, 6.0, dtype=torch.float64),
        graph_from_atoms(ethanol, 4.0, dtype=torch.float64),
    )
    assert wide.n_edges > tight.n_edges
    _assert_same_outputs(
        potential.energy_and_forces(wide), potential.energy_and_forces(tight), atol=1e-11
    )
    # float32
    pot32 = copy.deepcopy(potential).float()
    graph = graph_from_atoms(ethanol, 4.0)
    _assert_same_outputs(pot32.energy_and_forces(graph), pot32(graph), atol=1e-5)


def test_analytic_forces_follow_changed_weights_and_refuse_one_way_edges(potential):
    pot = copy.deepcopy(potential)
    graph = graph_from_atoms(_ethanol(), 4.0, dtype=torch.float64)
    before = pot.energy_and_forces(graph)["forces"]
    with torch.no_grad():
        pot.interactions[0].convolution.filter_network[0].weight.mul_(1.5)
    after = pot.energy_and_forces(graph)
    assert not torch.allclose(after["forces"], before)
    _assert_same_outputs(after, pot(graph), atol=1e-11)
    # an optimiser step changes the weights in place, as during training (validation
    # goes through energy_and_forces)
    pot.train()
    for p in pot.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(pot.parameters(), lr=1e-2)
    pot(graph, forces=False)["energy"].sum().backward()
    optimizer.step()
    _assert_same_outputs(pot.energy_and_forces(graph), pot(graph), atol=1e-11)
    pot.load_state_dict(potential.state_dict())
    np.testing.assert_allclose(
        pot.energy_and_forces(graph)["forces"].numpy(), before.numpy(), atol=1e-12
    )
    one_way = replace(
        graph, edge_index=graph.edge_index[:, :-1], cell_shifts=graph.cell_shifts[:-1]
    )
    with pytest.raises(ValueError, match="not symmetric"):
        pot.energy_and_forces(one_way)


def test_a_batch_of_different_structures_equals_each_alone(potential):
    structures = [_ethanol(), molecule("CH4"), _cu_cell(), molecule("H2O")]
    for s in structures:
        s.calc = None
        if not s.pbc.any():  # a Dataset mixing crystals and molecules gives molecules a box
            s.cell = [12.0, 12.0, 12.0]
    ds = Dataset.from_atoms(structures)
    graph, _ = GraphData(ds, 4.0, dtype=torch.float64).batch([2, 0, 3, 1])
    out = potential(graph)
    forces = np.split(out["forces"].detach().numpy(), np.cumsum(graph.n_atoms.numpy())[:-1])
    for k, idx in enumerate([2, 0, 3, 1]):
        e, f = _energy_forces(potential, structures[idx])
        assert float(out["energy"][k].detach()) == pytest.approx(e, abs=1e-10)
        np.testing.assert_allclose(forces[k], f, atol=1e-10)


# ---------------------------------------------------------------------------- statistics
def test_energy_offsets_recover_per_element_energies():
    rng = np.random.default_rng(0)
    true = {1: -13.6, 6: -1030.0, 8: -2040.0}
    frames = []
    for formula in ("CH4", "H2O", "CO2", "C2H6", "CH3OH", "H2"):
        mol = molecule(formula)
        e = sum(true[z] for z in mol.numbers) + rng.normal(0, 0.01)
        frames.append(Atoms(mol.numbers, mol.positions))
        frames[-1].info["energy"] = e
    ds = Dataset(
        [a.numbers for a in frames],
        [a.positions for a in frames],
        energies=[a.info["energy"] for a in frames],
    )
    offsets, scale = energy_statistics(ds)
    for z, e in true.items():
        assert offsets[z] == pytest.approx(e, abs=0.05)
    assert 0 < scale < 0.1


# ---------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def small_data():
    ds = load("ethanol_gfn2")
    return ds[:40], ds[40:55], ds[100:140]


def _small_schnet(**kw):
    params = dict(
        n_features=16, n_interactions=2, n_rbf=16, max_epochs=3, batch_size=8, device="cpu", lr=1e-3
    )
    params.update(kw)
    return SchNet(**params)


def test_training_lowers_the_error_and_the_model_round_trips(small_data, tmp_path):
    train, valid, test = small_data
    model = _small_schnet(max_epochs=6).fit(train, valid, progress=False)
    curve = model.history_.column("valid_force_mae")
    assert curve[-1] < curve[0]
    path = model.save(tmp_path / "schnet.npz")
    again = load_model(path)
    assert isinstance(again, SchNet) and again.get_params() == model.get_params()
    e1, f1 = model.predict(test)
    e2, f2 = again.predict(test)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(f1, f2)
    # bare positions of the training molecule, and a single Atoms, agree with the Dataset path
    e3, f3 = again.predict(test.positions[:3])
    np.testing.assert_allclose(e3, e1[:3], rtol=1e-6)
    e4, f4 = again.predict(test[1])
    np.testing.assert_allclose(f4[0], f1[1], atol=1e-5)
    assert len(again.history_) == len(model.history_)
    with pytest.raises(FileExistsError):
        model.save(path)


def test_resumed_training_is_identical_to_an_uninterrupted_run(small_data, tmp_path):
    train, valid, _ = small_data
    straight = _small_schnet(max_epochs=4).fit(train, valid, progress=False)
    ckpt = tmp_path / "run.ckpt"
    _small_schnet(max_epochs=2).fit(train, valid, checkpoint=ckpt, progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        _small_schnet(max_epochs=4).fit(train, valid, checkpoint=ckpt, progress=False)
    resumed = _small_schnet(max_epochs=4).fit(
        train, valid, checkpoint=ckpt, resume=True, progress=False
    )
    assert len(resumed.history_) == 4
    for a, b in zip(
        straight.potential_.state_dict().values(),
        resumed.potential_.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(
        straight.history_.column("valid_loss"), resumed.history_.column("valid_loss")
    )


def test_nan_in_the_loss_stops_training_with_a_clear_message(small_data):
    train, _, _ = small_data
    pot = SchNetPotential(n_features=8, n_interactions=1, n_rbf=8)
    data = GraphData(train, pot.cutoff)
    data.energies[5] = float("nan")  # what a corrupt label (or a diverging net) does
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        Trainer(pot, max_epochs=2, batch_size=8).fit(data, progress=False)


def test_training_needs_the_labels_it_weights(small_data):
    train, _, _ = small_data
    no_forces = Dataset(train.numbers, train.positions, energies=train.energies)
    with pytest.raises(ValueError, match="no forces"):
        _small_schnet().fit(no_forces, progress=False)
    _small_schnet(force_weight=0.0, energy_weight=1.0, max_epochs=1).fit(no_forces, progress=False)


def test_unknown_elements_and_overlapping_validation_are_refused(small_data):
    train, valid, _ = small_data
    model = _small_schnet(max_epochs=1).fit(train, valid, progress=False)
    with pytest.raises(ValueError, match="knows nothing about N"):
        model.predict(molecule("NH3"))
    with pytest.raises(ValueError, match="also appear in the training"):
        _small_schnet(max_epochs=1).fit(train, train[:5], progress=False)


def test_calculator_runs_md_and_gives_stress_for_crystals(small_data):
    from ase.calculators.fd import calculate_numerical_stress
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    train, valid, _ = small_data
    model = _small_schnet(max_epochs=1).fit(train, valid, progress=False)
    atoms = train[0]
    atoms.calc = model.calculator()
    VelocityVerlet(atoms, timestep=0.5 * fs).run(5)
    assert np.isfinite(atoms.get_potential_energy())
    cu = load("cu_vacancy_emt")[:12]
    crystal_model = _small_schnet(max_epochs=1, cutoff=4.0).fit(cu, progress=False)
    cell = cu[0]
    cell.calc = crystal_model.calculator()
    assert cell.get_stress().shape == (6,)
    np.testing.assert_allclose(
        cell.get_stress(), calculate_numerical_stress(cell, eps=1e-4), atol=2e-4
    )


def test_float64_and_float32_agree(small_data):
    train, valid, test = small_data
    m32 = _small_schnet(max_epochs=1).fit(train, valid, progress=False)
    m64 = _small_schnet(max_epochs=1, dtype="float64").fit(train, valid, progress=False)
    assert m64.potential_.energy_scale.dtype == torch.float64
    _, f32 = m32.predict(test)
    _, f64 = m64.predict(test)
    np.testing.assert_allclose(f32, f64, atol=5e-3)


@pytest.mark.gpu
def test_cuda_matches_cpu(small_data):
    train, valid, test = small_data
    model = _small_schnet(max_epochs=1, dtype="float64").fit(train, valid, progress=False)
    e_cpu, f_cpu = model.predict(test)
    model.potential_.to("cuda")
    e_gpu, f_gpu = model.predict(test)
    np.testing.assert_allclose(e_gpu, e_cpu, atol=1e-8)
    np.testing.assert_allclose(f_gpu, f_cpu, atol=1e-8)
    trained_on_gpu = _small_schnet(max_epochs=1, device="cuda").fit(train, valid, progress=False)
    assert trained_on_gpu.device_.type == "cuda"


def test_one_model_for_molecules_of_different_sizes():
    from mlffkit.evaluation import evaluate

    ethanol, aspirin = load("ethanol_gfn2"), load("aspirin_gfn2")
    train = Dataset.concatenate([ethanol[:20], aspirin[:10]])
    test = Dataset.concatenate([ethanol[200:205], aspirin[200:203]])
    model = _small_schnet(max_epochs=2).fit(train, progress=False)
    assert model.molecule_numbers_ is None
    energies, forces = model.predict(test)
    assert [len(f) for f in forces] == [9] * 5 + [21] * 3
    report = evaluate(model, test)
    assert report.forces_pred.shape == (5 * 9 + 3 * 21, 3)
    assert np.isfinite(report.force_mae) and report.n_atoms == 21
    with pytest.raises(ValueError, match="bare positions"):
        model.predict(test[0].positions)


def test_load_model_restores_tuples_and_can_switch_to_float64(small_data, tmp_path):
    from mlffkit.models import GeometricAttention

    train, valid, test = small_data
    model = GeometricAttention(n_features=8, n_layers=1, n_rbf=8, max_epochs=1, device="cpu").fit(
        train, valid, progress=False
    )
    again = load_model(model.save(tmp_path / "att.npz"), dtype="float64")
    assert again.orders == (2, 3, 4) and again.dtype_ == torch.float64
    np.testing.assert_allclose(again.predict(test)[1], model.predict(test)[1], atol=1e-4)
    with pytest.raises(ValueError, match="can change only"):
        load_model(tmp_path / "att.npz", n_features=16)


def test_schnet_filters_vanish_at_the_cutoff():
    pot = SchNetPotential(n_features=8, n_interactions=2, cutoff=4.0, n_rbf=8)
    r = torch.tensor([0.5, 2.0, 3.999, 4.0, 6.0])
    w = pot.filters(r, interaction=1).detach()
    assert w.shape == (5, 8)
    assert w[0].abs().max() > 1e-3 and w[3:].abs().max() == 0
    assert w[2].abs().max() < 1e-4


def test_kernel_models_refuse_a_validation_set_in_fit(small_data):
    from mlffkit.models import GDML

    train, valid, _ = small_data
    with pytest.raises(ValueError, match="select_sigma"):
        GDML(sigma=10).fit(train, valid)


def test_graph_data_does_not_share_memory_with_the_dataset(small_data):
    train, _, _ = small_data
    before = train.energies.copy(), train.flat_positions.copy()
    data = GraphData(train, 5.0, dtype=torch.float64)
    data.energies.zero_()
    data.positions.zero_()
    np.testing.assert_array_equal(train.energies, before[0])
    np.testing.assert_array_equal(train.flat_positions, before[1])
