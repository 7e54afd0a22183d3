r"""The space-group operations of a periodic (super)cell, as permutations of its atoms.

BIGDML (Sauceda et al., Nat. Commun. 13, 3733, 2022) symmetrises its kernel over the
symmetry group of the supercell it models, as sGDML does over a molecule's
permutations. An operation :math:`g: \mathbf r \mapsto R\mathbf r + \mathbf t` (a
rotation or reflection :math:`R` that maps the lattice onto itself, and a
translation) is a symmetry of a structure if it moves every atom onto a site of an
atom of the same element, up to a lattice translation (the minimum image). It then
*relabels* the atoms: ``perm[i]`` is the atom whose site atom ``i`` is moved to,
``g(positions)[i] ≈ positions[perm[i]]``. The kernel only needs these permutations.

How the group is found (no spglib; small and explicit):

1. **Lattice point group.** In a Minkowski-reduced basis every rotation that maps the
   lattice onto itself is an integer matrix with entries -1, 0, 1 in that basis; the
   ones that are orthogonal in Cartesian space are kept (48 for a cubic cell). For a
   slab (periodic in two directions) the normal of the periodic plane must map onto
   itself or its negative.
2. **Translations.** For each rotation, the rotated structure is shifted so that one
   anchor atom (of the rarest element) lands on each atom of its element in turn; the
   shift is a symmetry if every atom then lies within ``tol`` of a site of its
   element (minimum image), one atom per site.
3. **Group.** The distinct permutations, the identity first, closed under composition
   (:func:`mlffkit.symmetry.close_group`).

Defects lower the symmetry: with a vacancy only the operations that map the vacant
site onto itself survive (the *stabiliser* of the vacancy: the 48 operations of
:math:`O_h` about the vacancy in fcc, out of 32 × 48 = 1536 for the perfect 32-site
supercell); with an adatom on a slab, those that fix the adsorption site (C4v, 8, for
a hollow site on fcc(100)). Every permutation found swaps only atoms of one element,
so it is an exact symmetry of the energy whatever the tolerance; a loose ``tol``
can only add operations that the data do not realise, which cost time but not
correctness.

Thermal frames are not symmetric. :func:`mean_structure` averages frames, each
aligned to the first under the minimum image with its rigid drift removed, so the
thermal scatter (0.1–0.2 Å per coordinate for bulk Cu at 700 K, more at a surface)
averages out. What remains sets the default tolerance, 0.4 × the shortest distance
between two like atoms (:func:`default_tolerance`; 1.0 Å for copper): a wrong
operation moves some atom onto an empty site (the vacancy, an empty hollow), about
that distance from any like atom, while the means of 5 frames of the bundled copper
vacancy match their 48 operations within 0.5 Å and the means of 10 frames of the Pt
adatom on Cu(100) (600 K, free surfaces, a few hop attempts) their 8 within 0.9 Å.

>>> ops = crystal_symmetries(mean_structure(ds.positions, cell, pbc), ds.numbers, cell, pbc)  # doctest: +SKIP
>>> len(ops), ops.permutations.shape                                                          # doctest: +SKIP
(48, (48, 31))
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from mlffkit.descriptors.inverse_distances import pair_indices
from mlffkit.descriptors.periodic import MinimumImage
from mlffkit.symmetry import close_group

#: default site-matching tolerance, as a fraction of the shortest distance between like atoms
TOLERANCE_FRACTION = 0.4
#: how far from orthogonal (max |R Rᵀ - I|) a candidate rotation may be: cells are exact
_ORTHOGONALITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SpaceGroupOperations:
    """Symmetry operations of a structure in its cell, and the atom permutations they induce.

    Operation ``k`` maps a position ``r`` (Å) to ``rotations[k] @ r + translations[k]``
    and atom ``i`` onto the site of atom ``permutations[k, i]``.

    Attributes
    ----------
    rotations : numpy.ndarray, shape (n_ops, 3, 3)
        Cartesian rotation/reflection matrices (orthogonal; acting on column vectors).
    translations : numpy.ndarray, shape (n_ops, 3)
        Translations in Å (defined up to lattice translations).
    permutations : numpy.ndarray of int, shape (n_ops, n_atoms)
        ``g(positions)[i] ≈ positions[permutations[k, i]]`` (minimum image), identity first.
    max_deviation : float
        Largest distance (Å) between a moved atom and the site it was matched to.
    """

    rotations: np.ndarray
    translations: np.ndarray
    permutations: np.ndarray
    max_deviation: float

    def __len__(self) -> int:
        return len(self.permutations)

    def apply(self, k: int, positions) -> np.ndarray:
        """Positions ``(..., n_atoms, 3)`` moved by operation ``k`` (not relabelled), Å."""
        pos = np.asarray(positions, dtype=np.float64)
        return pos @ self.rotations[k].T + self.translations[k]

    def point_group_order(self) -> int:
        """Number of distinct rotations among the operations."""
        return len(np.unique(np.round(self.rotations, 6).reshape(len(self), 9), axis=0))


# ----------------------------------------------------------------------------- reference
def mean_structure(positions, cell, pbc=True) -> np.ndarray:
    """The average structure of thermal frames of one crystal, for symmetry searches.

    Each frame is aligned to the first: an anchor atom's minimum-image displacement
    takes out the drift of the whole crystal (modulo lattice translations), every
    atom's remaining minimum-image displacement is taken, and the mean displacement
    (the rigid shift) is removed. The aligned frames are averaged. Wrapped and
    unwrapped positions give the same result. Atoms must not have hopped to another
    site between frames (a diffusing atom would be averaged between sites).

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3) or (n_atoms, 3)
        Frames in Å.
    cell : array_like, shape (3, 3)
        Lattice vectors (rows), Å.
    pbc : bool or array_like of bool, shape (3,)

    Returns
    -------
    numpy.ndarray, shape (n_atoms, 3)
        In the frame of the first structure, Å.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    mic = MinimumImage(cell, pbc)
    first = torch.as_tensor(pos[0])
    frames = torch.as_tensor(pos)
    drift = mic.shortest_vectors(frames[:, 0] - first[0])  # (n_frames, 3), anchor atom 0
    moved = mic.shortest_vectors(frames - drift[:, None] - first)  # (n_frames, n_atoms, 3)
    moved = moved - moved.mean(dim=1, keepdim=True)
    return (first + moved.mean(dim=0)).numpy()


# ----------------------------------------------------------------------------- point group
def lattice_rotations(cell, pbc=True) -> np.ndarray:
    """The rotations and reflections that map the lattice of ``cell`` onto itself.

    Parameters
    ----------
    cell : array_like, shape (3, 3)
        Lattice vectors (rows), Å.
    pbc : bool or array_like of bool, shape (3,)
        Two or three periodic directions. With two, the normal of the periodic plane
        is mapped onto ± itself.

    Returns
    -------
    numpy.ndarray, shape (n_rotations, 3, 3)
        Cartesian orthogonal matrices acting on column vectors, the identity first
        (48 for a cubic lattice, 8 for a square surface lattice).

    Raises
    ------
    ValueError
        For fewer than two periodic directions.
    """
    mic = MinimumImage(cell, pbc)
    k = int(mic.pbc.sum())
    if k < 2:
        raise ValueError(
            f"crystal symmetries need a cell periodic in at least two directions, got pbc "
            f"{mic.pbc.tolist()}; for a molecule use mlffkit.symmetry.find_permutations"
        )
    periodic = mic.reduced_cell[mic.pbc]  # (k, 3) rows, Minkowski-reduced
    if k == 3:
        complement = np.zeros((0, 3))
    else:
        normal = np.cross(periodic[0], periodic[1])
        complement = (normal / np.linalg.norm(normal))[None]
    basis = np.vstack([periodic, complement])  # rows
    inverse = np.linalg.inv(basis)
    # every integer matrix with entries -1, 0, 1 acting on the periodic basis, and ±1 on the
    # normal of a slab; row convention r' = r m with basis rows mapped to w·periodic, ±normal
    w = np.array(list(itertools.product((-1, 0, 1), repeat=k * k)), dtype=np.float64)
    w = w.reshape(-1, k, k)
    w = w[np.isclose(np.abs(np.linalg.det(w)), 1.0)]
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=3 - k))).reshape(
        2 ** (3 - k), 3 - k
    )
    images = np.concatenate(
        [
            np.repeat(w @ periodic, len(signs), axis=0),
            np.tile(signs[:, :, None] * complement[None], (len(w), 1, 1)),
        ],
        axis=1,
    )
    m = inverse @ images  # (n_candidates, 3, 3)
    error = np.abs(m @ m.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    found = m[error < _ORTHOGONALITY_TOLERANCE].transpose(0, 2, 1)
    identity = int(np.argmin(np.abs(found - np.eye(3)).sum(axis=(1, 2))))
    order = [identity] + [i for i in range(len(found)) if i != identity]
    return found[order]


# ----------------------------------------------------------------------------- search
def default_tolerance(reference, numbers, cell, pbc=True) -> float:
    """The default site-matching tolerance: 0.4 × the shortest distance between like atoms, Å.

    Minimum-image distances between atoms of one element in ``reference`` (atoms
    alone of their element are skipped; without any like pair, all pairs count).
    """
    ref = torch.as_tensor(np.asarray(reference, dtype=np.float64))[None]
    numbers = np.asarray(numbers)
    mic = MinimumImage(cell, pbc)
    i, j = pair_indices(len(numbers))
    r = torch.linalg.vector_norm(mic.pair_vectors(ref)[0], dim=-1).numpy()
    like = numbers[i] == numbers[j]
    shortest = min(r[like].min() if like.any() else np.inf, mic.shortest_translation)
    if not np.isfinite(shortest):
        shortest = r.min()
    return TOLERANCE_FRACTION * float(shortest)


def _group_of(perms: list[tuple]) -> np.ndarray:
    """The group the permutations generate, identity first, from few generators.

    Composing every element with every other costs O(G² N); adding an element as a
    generator only when the group so far lacks it needs about log₂ G generators.
    """
    generators: list[tuple] = []
    group = np.array(perms[:1], dtype=np.int64)
    members = {perms[0]}
    for p in perms[1:]:
        if p not in members:
            generators.append(p)
            group = close_group(np.array([perms[0], *generators], dtype=np.int64))
            members = {tuple(int(v) for v in g) for g in group}
    return group


def crystal_symmetries(
    reference, numbers, cell, pbc=True, *, tol: float | None = None
) -> SpaceGroupOperations:
    """The space-group operations that map a structure onto itself in its cell.

    Parameters
    ----------
    reference : array_like, shape (n_atoms, 3)
        One structure in Å, ideally near-symmetric: a relaxed structure, ideal
        lattice sites, or the :func:`mean_structure` of thermal frames.
    numbers : array_like of int, shape (n_atoms,)
        Atomic numbers: atoms map only onto atoms of the same element.
    cell : array_like, shape (3, 3)
        Lattice vectors (rows), Å; the operations are those of this (super)cell.
    pbc : bool or array_like of bool, shape (3,)
        Two or three periodic directions.
    tol : float, optional
        Largest distance (Å) between a moved atom and the site it is matched to;
        default :func:`default_tolerance` (0.4 × the shortest like-atom distance).

    Returns
    -------
    SpaceGroupOperations
        Identity first; the permutations form a group. With a defect only the
        operations that fix the defect remain (its stabiliser); no lattice
        translation survives unless the structure repeats within the cell.

    Raises
    ------
    ValueError
        For mismatched shapes, fewer than two periodic directions or a bad ``tol``.
    """
    ref = np.asarray(reference, dtype=np.float64)
    numbers = np.asarray(numbers)
    if ref.ndim != 2 or ref.shape[1] != 3 or numbers.shape != (len(ref),):
        raise ValueError(
            f"reference must be one structure (n_atoms, 3) with numbers (n_atoms,); got shapes "
            f"{ref.shape} and {numbers.shape}"
        )
    if tol is None:
        tol = default_tolerance(ref, numbers, cell, pbc)
    if not (np.isscalar(tol) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive distance in Å (or None), got {tol!r}")
    mic = MinimumImage(cell, pbc)
    rotations = lattice_rotations(cell, pbc)
    elements, counts = np.unique(numbers, return_counts=True)
    anchor = int(np.flatnonzero(numbers == elements[np.argmin(counts)])[0])
    targets = np.flatnonzero(numbers == numbers[anchor])
    same_element = torch.as_tensor(numbers[:, None] == numbers[None, :])
    sites = torch.as_tensor(ref)

    ops: dict[tuple, tuple] = {}
    deviation = 0.0
    for rot in rotations:
        moved = ref @ rot.T
        shifts = ref[targets] - moved[anchor]  # (n_targets, 3): anchor onto each like atom
        candidate = torch.as_tensor(moved[None] + shifts[:, None])  # (n_targets, n_atoms, 3)
        # wrapping finds the nearest site (it is exact for the short vectors that matter
        # here, and never shorter than the true minimum image); matches are checked exactly below
        dist = torch.linalg.vector_norm(
            mic.wrap(candidate[:, :, None] - sites[None, None]), dim=-1
        )  # (n_targets, n_atoms, n_sites)
        dist = torch.where(same_element, dist, torch.inf)
        best, perm = dist.min(dim=-1)
        for t in np.flatnonzero(best.max(dim=1).values.numpy() <= tol):
            p = perm[t].numpy()
            key = tuple(int(v) for v in p)
            if key in ops or len(set(key)) != len(key):
                continue
            error = torch.linalg.vector_norm(
                mic.shortest_vectors(candidate[t] - sites[perm[t]]), dim=-1
            ).max()
            if float(error) <= tol:
                ops[key] = (rot, shifts[t])
                deviation = max(deviation, float(error))
    group = _group_of(list(ops))
    for key in {tuple(int(v) for v in p) for p in group} - set(ops):
        # only with a tolerance loose enough to accept near-symmetries: the closure's extra
        # members are exact relabellings of like atoms as well, but have no operation
        ops[key] = (np.full((3, 3), np.nan), np.full(3, np.nan))
    keys = [tuple(int(v) for v in p) for p in group]
    return SpaceGroupOperations(
        rotations=np.array([ops[k][0] for k in keys]),
        translations=np.array([ops[k][1] for k in keys]),
        permutations=group,
        max_deviation=deviation,
    )


def find_crystal_permutations(
    positions, numbers, cell, pbc=True, *, tol: float | None = None
) -> np.ndarray:
    """Atom permutations of the space group that frames of one crystal share (BIGDML).

    The :func:`crystal_symmetries` of the :func:`mean_structure` of the frames.

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3) or (n_atoms, 3)
        Frames in Å (e.g. the training set), wrapped or not.
    numbers : array_like of int, shape (n_atoms,)
    cell : array_like, shape (3, 3)
        Lattice vectors (rows), Å.
    pbc : bool or array_like of bool, shape (3,)
    tol : float, optional
        Site-matching tolerance, Å; default :func:`default_tolerance` of the mean structure.

    Returns
    -------
    numpy.ndarray of int, shape (n_ops, n_atoms)
        The identity first; a group.
    """
    reference = mean_structure(positions, cell, pbc)
    return crystal_symmetries(reference, numbers, cell, pbc, tol=tol).permutations
