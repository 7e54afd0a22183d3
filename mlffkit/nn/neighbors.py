"""Neighbour lists: which atoms a message-passing network lets talk to each other.

:func:`neighbor_list` wraps `vesin <https://github.com/Luthaf/vesin>`_, a fast cell-list
search that handles periodic cells of any shape, including cells smaller than the
cutoff (then an atom sees several images of a neighbour, and of itself). With
``cutoff=None`` every atom of a molecule is the neighbour of every other, which is
what models without a cutoff (geometric attention) use.

Indices come back as a *full* list: both ``(i, j)`` and ``(j, i)``, so that a message
sum over ``j`` for each ``i`` sees all neighbours.

Small molecules (up to :data:`DIRECT_SEARCH_ATOMS` atoms) skip the cell list: all
``n²`` distances cost less than setting one up, and an MD step of a small molecule
is short enough for that to matter.
"""

from __future__ import annotations

import numpy as np
import vesin

#: molecules with at most this many atoms are searched by all pairwise distances
DIRECT_SEARCH_ATOMS = 64


def _check_cell(cell: np.ndarray, pbc: np.ndarray) -> None:
    lengths = np.linalg.norm(cell, axis=1)
    if np.any(pbc & (lengths < 1e-8)):
        raise ValueError(
            "a periodic direction has a zero-length lattice vector; give the cell "
            "(lattice vectors as rows, Å) or switch pbc off along that direction"
        )
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-8:
        raise ValueError(
            "the cell has zero volume; give three linearly independent lattice vectors"
        )


def neighbor_list(
    positions,
    cutoff: float | None,
    cell=None,
    pbc=False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs of atoms closer than ``cutoff``, periodic images included.

    Parameters
    ----------
    positions : array_like, shape (n_atoms, 3)
        Cartesian positions, Å.
    cutoff : float or None
        Cutoff radius, Å. ``None`` connects every pair of a non-periodic structure.
    cell : array_like, shape (3, 3), optional
        Lattice vectors as rows, Å. Needed when any ``pbc`` is True.
    pbc : bool or array_like of 3 bool
        Periodicity along each lattice vector.

    Returns
    -------
    i, j : numpy.ndarray, int64, shape (n_pairs,)
        Centre and neighbour atom of each pair; the pair vector is
        ``positions[j] - positions[i] + shifts @ cell``.
    shifts : numpy.ndarray, int64, shape (n_pairs, 3)
        Lattice translation of the neighbour image (zeros without periodicity).

    Raises
    ------
    ValueError
        For a non-positive cutoff, ``cutoff=None`` with periodic boundaries, a
        periodic direction without a lattice vector, or non-finite positions.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions has shape {positions.shape}; expected (n_atoms, 3) in Å")
    if not np.all(np.isfinite(positions)):
        raise ValueError(
            "positions contain NaN or infinite values; a neighbour list needs finite ones"
        )
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    n = len(positions)
    if cutoff is None:
        if pbc.any():
            raise ValueError(
                "a periodic structure has infinitely many neighbours without a cutoff; "
                "give the model a cutoff (Å) to use it on periodic cells"
            )
        i, j = np.nonzero(~np.eye(n, dtype=bool))
        return i.astype(np.int64), j.astype(np.int64), np.zeros((len(i), 3), np.int64)
    cutoff = float(cutoff)
    if not cutoff > 0:
        raise ValueError(f"cutoff must be a positive distance in Å, got {cutoff}")
    if pbc.any():
        if cell is None:
            raise ValueError(
                "pbc is set but no cell was given; pass cell=(3, 3) lattice vectors in Å"
            )
        cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
        _check_cell(cell, pbc)
    elif n <= DIRECT_SEARCH_ATOMS:
        d = positions[:, None, :] - positions[None, :, :]
        distance2 = np.einsum("ijk,ijk->ij", d, d)
        np.fill_diagonal(distance2, np.inf)
        i, j = np.nonzero(distance2 < cutoff * cutoff)
        return i.astype(np.int64), j.astype(np.int64), np.zeros((len(i), 3), np.int64)
    else:
        cell = np.zeros((3, 3))
    search = vesin.NeighborList(cutoff=cutoff, full_list=True)
    i, j, shifts = search.compute(points=positions, box=cell, periodic=pbc, quantities="ijS")
    return i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64)
