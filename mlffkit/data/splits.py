"""Train/validation/test splits that are reproducible, disjoint and tied to their dataset.

A :class:`Split` holds frame indices and the fingerprint of the dataset they index,
so that it can be saved, reloaded and applied again only to that same dataset.
:func:`check_disjoint` compares frames by content (their atoms and positions) and so
also catches a test frame that reached the training data through another file.

>>> split = random_split(ds, n_train=1000, n_valid=500, seed=0)  # doctest: +SKIP
>>> train, valid, test = split.apply(ds)                         # doctest: +SKIP
>>> split.save("split.json")                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlffkit.data.dataset import Dataset
from mlffkit.fileio import atomic_write_text

SPLIT_FORMAT_VERSION = 1


def _as_indices(values, what: str) -> np.ndarray:
    arr = np.asarray(values if values is not None else [], dtype=np.int64).ravel()
    if arr.size != len(np.unique(arr)):
        raise ValueError(f"the {what} indices repeat some frames; each frame may appear once")
    return arr


@dataclass(eq=False)
class Split:
    """Frame indices of a train/validation/test split of one dataset.

    Attributes
    ----------
    train, valid, test : numpy.ndarray of int
        Frame indices into the dataset, sorted, pairwise disjoint; ``valid`` and
        ``test`` may be empty.
    seed : int or None
        Seed of the random draw.
    method : str
        ``"random"`` or ``"stratified"`` (by energy).
    fingerprint : str
        :meth:`Dataset.fingerprint` of the dataset the indices refer to.
    n_frames : int
        Its number of frames.
    dataset_name : str
        Its name, for people reading the JSON file.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    seed: int | None
    method: str
    fingerprint: str
    n_frames: int
    dataset_name: str = ""

    def __post_init__(self):
        self.train = _as_indices(self.train, "train")
        self.valid = _as_indices(self.valid, "valid")
        self.test = _as_indices(self.test, "test")
        self.n_frames = int(self.n_frames)
        self.seed = None if self.seed is None else int(self.seed)
        if self.train.size == 0:
            raise ValueError("a split needs at least one training frame")
        for what, idx in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            if idx.size and (idx.min() < 0 or idx.max() >= self.n_frames):
                raise ValueError(
                    f"{what} indices run outside 0..{self.n_frames - 1}, the frames of the dataset"
                )
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            common = np.intersect1d(getattr(self, a), getattr(self, b))
            if common.size:
                raise ValueError(
                    f"the {a} and {b} sets share {common.size} frame(s) (e.g. {common[:5].tolist()}); "
                    "a split must be disjoint"
                )

    def __eq__(self, other) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return (self.seed, self.method, self.fingerprint, self.n_frames) == (
            other.seed,
            other.method,
            other.fingerprint,
            other.n_frames,
        ) and all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in ("train", "valid", "test")
        )

    __hash__ = None  # mutable arrays inside

    def __repr__(self) -> str:
        return (
            f"Split(method={self.method!r}, seed={self.seed}, n_train={self.train.size}, "
            f"n_valid={self.valid.size}, n_test={self.test.size}, n_frames={self.n_frames}, "
            f"dataset={self.dataset_name or self.fingerprint[:8]!r})"
        )

    def apply(self, dataset: Dataset) -> tuple[Dataset, Dataset | None, Dataset | None]:
        """The train, validation and test subsets of ``dataset`` (None where empty).

        Each subset records the frames it took (``source_indices``) and the
        dataset's fingerprint (``source_fingerprint``).

        Raises
        ------
        ValueError
            If ``dataset`` is not the one this split was made for (its fingerprint
            differs), e.g. another file, other frames or other labels.
        """
        fp = dataset.fingerprint()
        if fp != self.fingerprint:
            raise ValueError(
                f"this split was made for dataset {self.dataset_name or '(unnamed)'} with "
                f"{self.n_frames} frames (fingerprint {self.fingerprint[:12]}), but got "
                f"{dataset.name or '(unnamed)'} with {len(dataset)} frames (fingerprint "
                f"{fp[:12]}); load the dataset the split was made for, or make a new split"
            )
        return (
            dataset.subset(self.train),
            dataset.subset(self.valid) if self.valid.size else None,
            dataset.subset(self.test) if self.test.size else None,
        )

    def to_dict(self) -> dict:
        """A JSON-ready dict (indices as lists)."""
        return {
            "mlffkit_split_version": SPLIT_FORMAT_VERSION,
            "method": self.method,
            "seed": self.seed,
            "dataset_name": self.dataset_name,
            "fingerprint": self.fingerprint,
            "n_frames": self.n_frames,
            "n_train": int(self.train.size),
            "n_valid": int(self.valid.size),
            "n_test": int(self.test.size),
            "train": self.train.tolist(),
            "valid": self.valid.tolist(),
            "test": self.test.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Split:
        """Rebuild a split from :meth:`to_dict` output, validating it."""
        missing = [k for k in ("train", "fingerprint", "n_frames", "method") if k not in d]
        if missing:
            raise ValueError(f"not a mlffkit split: it lacks {', '.join(missing)}")
        return cls(
            train=d["train"],
            valid=d.get("valid", []),
            test=d.get("test", []),
            seed=d.get("seed"),
            method=d["method"],
            fingerprint=d["fingerprint"],
            n_frames=d["n_frames"],
            dataset_name=d.get("dataset_name", ""),
        )

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the split as JSON (atomically; an existing file only with ``overwrite``)."""
        return atomic_write_text(path, json.dumps(self.to_dict()) + "\n", overwrite=overwrite)

    @classmethod
    def load(cls, path) -> Split:
        """Read a split written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If there is no such file.
        ValueError
            If the file is not a valid split.
        """
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a split file (invalid JSON: {err})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path} is not a split file")
        return cls.from_dict(d)


def _check_sizes(dataset: Dataset, n_train, n_valid, n_test) -> tuple[int, int, int]:
    n = len(dataset)
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    for key, value in sizes.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{key} must be a whole number of frames, got {value!r}")
        if value < 0:
            raise ValueError(f"{key} cannot be negative, got {value}")
    if n_train < 1:
        raise ValueError("n_train must be at least 1")
    rest = n - n_train - n_valid
    if rest < 0 or (n_test is not None and n_test > rest):
        asked = n_train + n_valid + (n_test or 0)
        raise ValueError(
            f"n_train + n_valid{' + n_test' if n_test else ''} = {asked} exceeds the {n} frames "
            f"of dataset {dataset.name or '(unnamed)'}; ask for fewer frames"
        )
    return int(n_train), int(n_valid), int(rest if n_test is None else n_test)


def random_split(
    dataset: Dataset, n_train: int, n_valid: int = 0, n_test: int | None = None, seed: int = 0
) -> Split:
    """Draw disjoint train/validation/test frames uniformly at random.

    Parameters
    ----------
    dataset : Dataset
    n_train, n_valid : int
        Numbers of training and validation frames.
    n_test : int, optional
        Number of test frames; None takes all remaining frames.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed and dataset give
        the same split.

    Raises
    ------
    ValueError
        If the sizes are negative, not whole numbers, or exceed the dataset.
    """
    n_train, n_valid, n_test = _check_sizes(dataset, n_train, n_valid, n_test)
    perm = np.random.default_rng(seed).permutation(len(dataset))
    train = perm[:n_train]
    valid = perm[n_train : n_train + n_valid]
    test = perm[n_train + n_valid : n_train + n_valid + n_test]
    return Split(
        np.sort(train),
        np.sort(valid),
        np.sort(test),
        seed=seed,
        method="random",
        fingerprint=dataset.fingerprint(),
        n_frames=len(dataset),
        dataset_name=dataset.name,
    )


def _stratified_draw(
    energies: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` of ``candidates``: one from each of ``k`` equal-probability energy bins.

    The candidates are ranked by energy and cut into ``k`` contiguous groups of
    (nearly) equal size, i.e. bins between energy quantiles; one frame is drawn
    from each. The sample follows the energy distribution and always reaches
    into both tails.
    """
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    ranked = candidates[np.argsort(energies[candidates], kind="stable")]
    return np.array([rng.choice(group) for group in np.array_split(ranked, k)], dtype=np.int64)


def stratified_split(
    dataset: Dataset, n_train: int, n_valid: int = 0, n_test: int | None = None, seed: int = 0
) -> Split:
    """Like :func:`random_split`, but each set is stratified by energy.

    Each set is drawn from the frames not yet taken, one frame from each of
    ``n`` equal-probability energy bins (the idea of sgdml's
    ``draw_strat_sample``, with quantile bins). Small training sets then cover
    the whole energy range, including the rare high-energy frames a uniform draw
    often misses. ``n_test=None`` takes all remaining frames.

    Raises
    ------
    ValueError
        If the dataset has no energies, or for sizes as in :func:`random_split`.
    """
    if dataset.energies is None:
        raise ValueError(
            f"stratified_split bins frames by energy but dataset {dataset.name or '(unnamed)'} "
            "has no energies; use random_split"
        )
    n_train, n_valid, n_test_resolved = _check_sizes(dataset, n_train, n_valid, n_test)
    rng = np.random.default_rng(seed)
    remaining = np.arange(len(dataset))
    picked = []
    for k in (n_train, n_valid, n_test_resolved):
        if n_test is None and len(picked) == 2:
            chosen = remaining  # the test set is all that is left
        else:
            chosen = _stratified_draw(dataset.energies, remaining, k, rng)
        picked.append(np.sort(chosen))
        remaining = np.setdiff1d(remaining, chosen, assume_unique=True)
    return Split(
        *picked,
        seed=seed,
        method="stratified",
        fingerprint=dataset.fingerprint(),
        n_frames=len(dataset),
        dataset_name=dataset.name,
    )


def check_disjoint(train: Dataset, test: Dataset, decimals: int = 6) -> None:
    """Raise if any frame of ``test`` also appears in ``train``.

    Frames are compared by content: atoms and positions rounded to ``decimals``
    Å (:meth:`Dataset.frame_hashes`), so duplicates are found whatever file or
    order they came from.

    Raises
    ------
    ValueError
        Listing how many frames of ``test`` are in ``train`` and which (their
        indices in ``test``, at most 20 shown).
    """
    for role, ds in (("train", train), ("test", test)):
        if not isinstance(ds, Dataset):
            raise ValueError(
                f"check_disjoint needs two Datasets, but {role} is {type(ds).__name__}; "
                "Split.apply returns None for an empty part (ask for a non-empty split)"
            )
    refuse_seen_frames(
        train.frame_hashes(decimals), test, decimals,
        seen="test frames also appear in the training data (test frames",
    )


def refuse_seen_frames(known_hashes, dataset: Dataset, decimals: int = 6, *,
                       seen: str = "frames were in this model's training set (frames") -> None:
    """Raise a ValueError if any frame of ``dataset`` has one of ``known_hashes``.

    The one place that decides and words a leak: :func:`check_disjoint` and the
    models' ``check_not_trained_on`` both call it. ``seen`` completes the message
    "N of the M <seen> [indices]...".
    """
    known = set(known_hashes)
    leaked = np.flatnonzero([h in known for h in dataset.frame_hashes(decimals)])
    if leaked.size:
        shown = leaked[:20].tolist()
        more = f" and {leaked.size - 20} more" if leaked.size > 20 else ""
        raise ValueError(
            f"{leaked.size} of the {len(dataset)} {seen} {shown}{more}); a model must never "
            "be tested on frames it was trained on: split the data with "
            "mlffkit.data.random_split"
        )
