"""Permutational symmetries: graph automorphisms, group closure and the data-driven search."""

from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule

import mlffkit
from mlffkit.symmetry import (
    bond_graph,
    check_permutations,
    close_group,
    find_permutations,
    format_permutation,
    graph_automorphisms,
)

FIXTURE = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"


def _as_set(perms):
    return {tuple(int(v) for v in p) for p in perms}


@pytest.mark.parametrize(
    ("name", "order"), [("H2O", 2), ("CH4", 24), ("C2H6", 72), ("C6H6", 12), ("CH3CH2OH", 12)]
)
def test_graph_automorphism_group_orders(name, order):
    # CH4: S4 on the hydrogens; C2H6: S3 x S3 on the methyls, times swapping them;
    # C6H6: the dihedral group of the ring; ethanol: S3 (methyl) x S2 (CH2)
    atoms = molecule(name)
    adj = bond_graph(atoms.numbers, atoms.positions)
    perms = graph_automorphisms(adj, atoms.numbers)
    assert len(perms) == order
    assert len(_as_set(perms)) == order
    np.testing.assert_array_equal(perms[0], np.arange(len(atoms)))
    for p in perms:
        np.testing.assert_array_equal(adj[p][:, p], adj)
        np.testing.assert_array_equal(atoms.numbers[p], atoms.numbers)


def test_automorphism_limit_is_an_error():
    atoms = molecule("C2H6")
    with pytest.raises(ValueError, match="more than 10 automorphisms"):
        graph_automorphisms(bond_graph(atoms.numbers, atoms.positions), atoms.numbers, max_count=10)


def test_close_group_generates_s3():
    group = close_group([[1, 2, 0, 3], [1, 0, 2, 3]])
    assert len(group) == 6
    np.testing.assert_array_equal(group[0], np.arange(4))
    assert close_group([[1, 2, 0, 3], [1, 0, 2, 3]], max_size=5) is None


def _ethanol_frames():
    ds = mlffkit.data.load(FIXTURE)
    return ds.positions, ds.numbers


def _relabelled(positions, perms):
    """The frames with their atoms relabelled by each permutation in turn (same physics)."""
    return np.concatenate([positions[:, p] for p in perms])


def _ethanol_hydrogens(numbers, positions):
    adj = bond_graph(numbers, positions)
    carbons = np.flatnonzero(numbers == 6)
    methyl_c = next(c for c in carbons if adj[c][numbers == 1].sum() == 3)
    ch2_c = next(c for c in carbons if c != methyl_c)
    h = np.flatnonzero(numbers == 1)
    return [int(i) for i in h if adj[methyl_c, i]], [int(i) for i in h if adj[ch2_c, i]]


def _perm(n, mapping):
    p = np.arange(n)
    for a, b in mapping.items():
        p[a] = b
    return p


def test_ethanol_search_finds_the_six_realised_permutations_not_all_twelve():
    """sGDML finds 6 for ethanol: methyl rotations, and methyl swaps that come with a CH2 swap
    (a reflection of the molecule). Swapping the CH2 hydrogens alone is a graph automorphism
    that no motion of the molecule reaches, so the data never show it."""
    positions, numbers = _ethanol_frames()
    (m1, m2, m3), (c1, c2) = _ethanol_hydrogens(numbers, positions)
    n = len(numbers)
    rotation = _perm(n, {m1: m2, m2: m3, m3: m1})
    reflection = _perm(n, {m1: m2, m2: m1, c1: c2, c2: c1})
    expected = close_group([rotation, reflection])
    assert len(expected) == 6
    frames = _relabelled(positions[::2], expected)
    found = find_permutations(frames, numbers)
    assert _as_set(found) == _as_set(expected)
    assert len(graph_automorphisms(bond_graph(numbers, frames), numbers)) == 12


def test_search_combines_relabelled_rotations_with_what_the_frames_show():
    """Relabelling frames by methyl rotations adds exactly those rotations to the group the
    original frames show (the fixture's frames already show the reflection)."""
    positions, numbers = _ethanol_frames()
    (m1, m2, m3), _ = _ethanol_hydrogens(numbers, positions)
    rotations = close_group([_perm(len(numbers), {m1: m2, m2: m3, m3: m1})])
    shown = find_permutations(positions, numbers)
    found = find_permutations(_relabelled(positions[::2], rotations), numbers)
    assert _as_set(found) == _as_set(close_group(np.vstack([rotations, shown])))
    assert _as_set(rotations) <= _as_set(found)


def test_single_frame_shows_no_symmetry():
    atoms = molecule("CH4")
    np.testing.assert_array_equal(find_permutations(atoms.positions, atoms.numbers), [np.arange(5)])


def test_check_permutations_validates_and_closes():
    numbers = molecule("CH4").numbers  # C H H H H
    group = check_permutations([[0, 2, 3, 1, 4]], numbers)
    assert len(group) == 3
    with pytest.raises(ValueError, match="not a permutation"):
        check_permutations([[0, 1, 1, 3, 4]], numbers)
    with pytest.raises(ValueError, match="only like atoms"):
        check_permutations([[1, 0, 2, 3, 4]], numbers)
    with pytest.raises(ValueError, match="shape"):
        check_permutations([[0, 1, 2]], numbers)


def test_format_permutation():
    numbers = molecule("CH4").numbers
    assert format_permutation([0, 2, 3, 1, 4], numbers) == "(H1 H2 H3)"
    assert format_permutation(np.arange(5), numbers) == "()"
