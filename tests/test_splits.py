"""Splits: reproducible, disjoint, stratified over the energy range, tied to their dataset,
and the leakage check that compares frames by content."""

import json

import numpy as np
import pytest

from mlffkit.data import Dataset, Split, check_disjoint, random_split, stratified_split


@pytest.fixture(scope="module")
def ds():
    """1000 frames of a distorted water molecule with a skewed (Boltzmann-like) energy
    distribution: few frames are high in energy, as in MD."""
    rng = np.random.default_rng(42)
    n = 1000
    pos = np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]])
    positions = pos + 0.05 * rng.normal(size=(n, 3, 3))
    energies = rng.exponential(0.1, size=n)
    return Dataset(
        numbers=[8, 1, 1],
        positions=positions,
        energies=energies,
        forces=rng.normal(size=(n, 3, 3)),
        name="water",
    )


@pytest.mark.parametrize("make", [random_split, stratified_split])
def test_reproducible_disjoint_and_complete(ds, make):
    a = make(ds, n_train=50, n_valid=30, seed=7)
    b = make(ds, n_train=50, n_valid=30, seed=7)
    c = make(ds, n_train=50, n_valid=30, seed=8)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.train, c.train)
    assert (a.train.size, a.valid.size, a.test.size) == (50, 30, 920)
    everything = np.concatenate([a.train, a.valid, a.test])
    assert np.array_equal(np.sort(everything), np.arange(1000))  # disjoint and complete
    limited = make(ds, n_train=50, n_valid=30, n_test=100, seed=7)
    assert limited.test.size == 100
    assert not set(limited.test) & (set(limited.train) | set(limited.valid))


def test_stratified_training_set_spans_the_energy_range(ds):
    """Ten training frames, one from each energy decile, for every seed: the rare
    high-energy frames are always represented, which a uniform draw cannot promise."""
    deciles = np.quantile(ds.energies, [0.1, 0.9])
    for seed in range(20):
        e = ds.energies[stratified_split(ds, n_train=10, seed=seed).train]
        assert e.min() <= deciles[0] and e.max() >= deciles[1]
    missed_top = sum(
        ds.energies[random_split(ds, n_train=10, seed=s).train].max() < deciles[1]
        for s in range(20)
    )
    assert missed_top > 0  # the uniform draw does miss the tail for some seeds


def test_stratified_sets_follow_the_energy_distribution(ds):
    split = stratified_split(ds, n_train=200, n_valid=100, seed=0)
    train, valid, _ = split.apply(ds)
    for part in (train, valid):
        for q in (0.25, 0.5, 0.75):
            assert abs(np.quantile(part.energies, q) - np.quantile(ds.energies, q)) < 0.02


def test_sizes_are_checked(ds):
    with pytest.raises(ValueError, match="n_train \\+ n_valid = 1001 exceeds the 1000 frames"):
        random_split(ds, n_train=1000, n_valid=1)
    with pytest.raises(ValueError, match="exceeds the 1000 frames"):
        stratified_split(ds, n_train=500, n_valid=400, n_test=101)
    with pytest.raises(ValueError, match="n_train must be a whole number of frames"):
        random_split(ds, n_train=0.8)
    with pytest.raises(ValueError, match="n_valid cannot be negative"):
        random_split(ds, n_train=10, n_valid=-1)
    unlabelled = Dataset(numbers=[8, 1, 1], positions=ds.positions[:20])
    with pytest.raises(ValueError, match="has no energies; use random_split"):
        stratified_split(unlabelled, n_train=5)


def test_apply_gives_subsets_with_provenance(ds):
    split = random_split(ds, n_train=20, n_valid=10, seed=1)
    train, valid, test = split.apply(ds)
    assert np.array_equal(train.source_indices, split.train)
    assert np.array_equal(train.positions, ds.positions[split.train])
    assert valid.source_fingerprint == ds.fingerprint() and len(test) == 970
    _, no_valid, no_test = random_split(ds, n_train=1000).apply(ds)
    assert no_valid is None and no_test is None


def test_split_refuses_another_dataset(ds):
    split = random_split(ds, n_train=20, seed=1)
    relabelled = Dataset(
        numbers=[8, 1, 1], positions=ds.positions, energies=ds.energies + 1e-9, forces=ds.forces
    )
    with pytest.raises(ValueError, match="this split was made for dataset water with 1000 frames"):
        split.apply(relabelled)


def test_save_and_load(ds, tmp_path):
    split = stratified_split(ds, n_train=20, n_valid=10, seed=3)
    path = split.save(tmp_path / "split.json")
    back = Split.load(path)
    assert back == split
    assert json.loads(path.read_text())["method"] == "stratified"
    with pytest.raises(FileExistsError):
        split.save(path)
    split.save(path, overwrite=True)
    d = split.to_dict()
    d["valid"] = d["train"][:2]
    with pytest.raises(ValueError, match="the train and valid sets share 2 frame"):
        Split.from_dict(d)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a split file"):
        Split.load(tmp_path / "bad.json")
    d = split.to_dict()
    d["test"] = [1000]
    with pytest.raises(ValueError, match="test indices run outside 0..999"):
        Split.from_dict(d)


def test_check_disjoint_finds_leaked_frames_by_content(ds):
    split = random_split(ds, n_train=100, seed=0)
    train, _, test = split.apply(ds)
    check_disjoint(train, test)  # a proper split passes
    # the same geometries reaching the test set through another route (a copy, reordered)
    leaked = Dataset(
        numbers=[8, 1, 1],
        positions=np.concatenate([test.positions[:5], train.positions[[7, 3, 9]]]),
    )
    with pytest.raises(ValueError, match=r"3 of the 8 test frames also appear .*\[5, 6, 7\]"):
        check_disjoint(train, leaked)


def test_check_disjoint_names_an_empty_part():
    ds = Dataset([1, 1], np.random.default_rng(0).normal(size=(4, 2, 3)))
    with pytest.raises(ValueError, match="test is NoneType"):
        check_disjoint(ds, None)
