"""Inverse pairwise distances, the descriptor of GDML and sGDML.

For ``n_atoms`` atoms the descriptor has one entry ``1 / r_ij`` per pair ``i > j``,
in the order of ``numpy.tril_indices(n_atoms, k=-1)`` (the lower triangle, row by
row: (1,0), (2,0), (2,1), (3,0), ...), the same order as sGDML. It is invariant
under rotations and translations but **not** under permutations of atoms: swapping
two hydrogens reorders the entries. sGDML restores that symmetry in the kernel
(:mod:`mlffkit.symmetry`), which needs :func:`pair_permutation`.
"""

from __future__ import annotations

import numpy as np
import torch

from mlffkit.descriptors.base import Descriptor


def pair_indices(n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Atom indices ``(i, j)`` with ``i > j`` of each descriptor entry, each ``(n_pairs,)``."""
    return np.tril_indices(n_atoms, k=-1)


def pair_permutation(perm) -> np.ndarray:
    """How a permutation of atoms reorders the inverse-distance descriptor.

    Parameters
    ----------
    perm : array_like of int, shape (n_atoms,)
        The frame with atoms ``positions[perm]``.

    Returns
    -------
    numpy.ndarray of int, shape (n_pairs,)
        ``index`` with ``D(positions[perm]) == D(positions)[index]``.
    """
    perm = np.asarray(perm, dtype=np.int64)
    n = len(perm)
    lookup = np.zeros((n, n), dtype=np.int64)
    i, j = pair_indices(n)
    lookup[i, j] = np.arange(len(i))
    lookup[j, i] = lookup[i, j]
    return lookup[perm[i], perm[j]]


def inverse_distances(positions: torch.Tensor, jacobian: bool = False):
    """Inverse pairwise distances ``1 / r_ij`` (1/Å), optionally with their Jacobian.

    Parameters
    ----------
    positions : torch.Tensor, shape (n_frames, n_atoms, 3)
        Cartesian positions in Å.
    jacobian : bool
        Also return the derivatives with respect to the positions.

    Returns
    -------
    features : torch.Tensor, shape (n_frames, n_pairs)
        ``n_pairs = n_atoms (n_atoms - 1) / 2``, pairs as in :func:`pair_indices`.
    jac : torch.Tensor, shape (n_frames, n_pairs, n_atoms, 3)
        ``d features / d positions`` in 1/Å², only with ``jacobian=True``.
    """
    n_frames, n_atoms, _ = positions.shape
    i, j = (torch.as_tensor(a, device=positions.device) for a in pair_indices(n_atoms))
    diff = positions[:, i] - positions[:, j]  # r_i - r_j, (n_frames, n_pairs, 3)
    r = torch.linalg.vector_norm(diff, dim=-1)
    if torch.any(r == 0):
        raise ValueError(
            "two atoms of a frame sit on the same spot (distance 0); fix those positions"
        )
    features = 1.0 / r
    if not jacobian:
        return features
    # d(1/r_ij)/d r_i = -(r_i - r_j) / r^3 and the opposite for r_j
    grad = diff * (features**3)[..., None]
    jac = positions.new_zeros(n_frames, len(i), n_atoms, 3)
    pairs = torch.arange(len(i), device=positions.device)
    jac[:, pairs, i] = -grad
    jac[:, pairs, j] = grad
    return features, jac


class InverseDistances(Descriptor):
    """Inverse pairwise distances ``1 / r_ij`` (1/Å), the GDML descriptor.

    A scikit-learn transformer: ``fit`` learns the molecule, ``transform`` maps
    frames to ``(n_frames, n_atoms (n_atoms - 1) / 2)`` features.

    Invariant under rotation and translation; **not** under permutation of atoms.

    Parameters
    ----------
    numbers : array_like, optional
        Atomic numbers; only checked against the frames (the descriptor does not
        use them). Learnt from a Dataset or Atoms passed to ``fit``.
    device : str or torch.device
        Where to compute (``"cpu"``, ``"cuda"``); results of ``transform`` are
        NumPy arrays on the CPU.

    Examples
    --------
    >>> X = InverseDistances().fit_transform(ds)        # doctest: +SKIP
    """

    def _n_features(self, n_atoms: int) -> int:
        return n_atoms * (n_atoms - 1) // 2

    def _compute(self, positions, numbers, jacobian):
        return inverse_distances(positions, jacobian=jacobian)
