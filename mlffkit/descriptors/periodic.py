r"""Inverse distances in a periodic cell under the minimum-image convention (BIGDML's descriptor).

In a crystal every atom has infinitely many periodic images. The minimum-image
convention keeps, for each pair of atoms, the distance to the *nearest* image of
the partner,

.. math::  \mathbf r_{ij} = \mathbf r_i - \mathbf r_j + \mathbf L_{ij}, \qquad
           \mathbf L_{ij} = \operatorname{arg\,min}_{\mathbf L \in \Lambda}
           \lVert \mathbf r_i - \mathbf r_j + \mathbf L \rVert,

over the lattice :math:`\Lambda` of the periodic cell vectors (all three for a bulk
crystal, two for a slab). The descriptor is then ``1 / |r_ij|`` per pair, in the
pair order of :func:`~mlffkit.descriptors.inverse_distances.pair_indices`, so that
:func:`~mlffkit.descriptors.inverse_distances.pair_permutation` relabels it.
Sauceda et al., Nat. Commun. 13, 3733 (2022) (BIGDML) build a global force field of
a supercell on it.

**How the nearest image is found.** The periodic cell vectors are first
Minkowski-reduced (the shortest, most nearly orthogonal basis of the same lattice,
:func:`ase.geometry.minkowski_reduce`). A difference vector is written in that basis,
completed by unit vectors orthogonal to it for the non-periodic directions (so that a
tilted non-periodic cell vector cannot hide lattice translations), its periodic
coordinates are wrapped into [-1/2, 1/2], and the 27 (slab: 9) neighbouring images
are compared. For a Minkowski-reduced basis this finds the true nearest image for any
cell, however skewed; simply rounding fractional coordinates of a skewed cell does not.

**When a cell is too small.** Let :math:`\lambda_1` be the length of the shortest
lattice translation. Two images of one atom are :math:`\ge \lambda_1` apart, so within
the *minimum-image radius* :math:`R_\mathrm{mic} = \lambda_1 / 2` (the radius of the
largest ball inside the Wigner–Seitz cell) every partner has at most one image, and
that image is the minimum image. Beyond it, several images are (nearly) equally close
and one distance per pair no longer describes the neighbourhood. mlffkit requires
each atom's **first-neighbour shell** — every partner up to ``neighbour_shell`` (1.2)
times its nearest-neighbour distance — to lie within :math:`R_\mathrm{mic}`, and
raises a ValueError otherwise (:meth:`MinimumImage.check_cell_size`): use a larger
supercell. A 2×2×2 fcc supercell (:math:`R_\mathrm{mic}` = a = 3.61 Å for Cu, first shell
2.55 Å) passes; the 4-atom conventional cell (:math:`R_\mathrm{mic}` = 1.8 Å) does not.

The descriptor is continuous everywhere; its gradient jumps where the nearest image
of a pair switches, which happens only for pairs farther apart than
:math:`R_\mathrm{mic}`, where ``1/r`` is small and flat.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from ase.geometry import minkowski_reduce

from mlffkit.descriptors.inverse_distances import pair_indices

#: a partner belongs to an atom's first-neighbour shell up to this factor times its nearest distance
NEIGHBOUR_SHELL = 1.2


def _as_pbc(pbc) -> np.ndarray:
    return np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()


class MinimumImage:
    """The minimum-image convention of one fixed cell, set up once and applied in torch.

    Parameters
    ----------
    cell : array_like, shape (3, 3)
        Lattice vectors as rows, in Å (ASE's convention). A vector along a
        non-periodic axis may be zero (a slab in ASE often has one).
    pbc : bool or array_like of bool, shape (3,)
        Which cell vectors are periods, e.g. ``(True, True, False)`` for a slab.

    Attributes
    ----------
    cell : numpy.ndarray, shape (3, 3)
    pbc : numpy.ndarray of bool, shape (3,)
    reduced_cell : numpy.ndarray, shape (3, 3)
        The cell with its periodic vectors replaced by a Minkowski-reduced basis of
        the same lattice (non-periodic vectors as given).
    shortest_translation : float
        Length of the shortest lattice translation λ₁, Å (inf without periodicity).
    radius : float
        The minimum-image radius λ₁ / 2, Å: every pair closer than this through
        any image has exactly one image that close.

    Raises
    ------
    ValueError
        For a cell that is not 3×3 and finite, or periodic vectors that are
        (nearly) linearly dependent.

    Examples
    --------
    >>> mic = MinimumImage(atoms.cell, atoms.pbc)                 # doctest: +SKIP
    >>> x, jac = mic.inverse_distances(positions, jacobian=True)  # doctest: +SKIP
    """

    def __init__(self, cell, pbc=True):
        cell = np.asarray(cell, dtype=np.float64)
        if cell.shape != (3, 3) or not np.all(np.isfinite(cell)):
            raise ValueError(
                f"cell must be 3×3 finite lattice vectors (rows, Å), got shape {cell.shape}"
            )
        self.cell = cell.copy()
        self.pbc = _as_pbc(pbc)
        periodic = cell[self.pbc]
        if len(periodic) and np.linalg.matrix_rank(periodic, tol=1e-6) < len(periodic):
            raise ValueError(
                f"the periodic cell vectors {periodic.tolist()} are linearly dependent (a flat or "
                "empty cell); give the lattice vectors of the periodic directions in Å"
            )
        reduced, _ = minkowski_reduce(cell, self.pbc) if self.pbc.any() else (cell, None)
        self.reduced_cell = np.asarray(reduced, dtype=np.float64)
        # Fractional coordinates are taken in a frame of the reduced periodic vectors and unit
        # vectors orthogonal to them: with a tilted non-periodic cell vector instead, its
        # in-plane part would hide lattice translations from the wrapping.
        k = int(self.pbc.sum())
        periodic = self.reduced_cell[self.pbc]
        complement = np.linalg.svd(periodic)[2][k:] if k else np.eye(3)
        self._frame = np.vstack([periodic, complement])
        self._inverse = np.linalg.inv(self._frame)
        axes = [(-1, 0, 1)] * k + [(0,)] * (3 - k)
        self._offsets = np.array(list(itertools.product(*axes)), dtype=np.float64)
        self._periodic_axes = np.arange(3) < k
        nonzero = self._offsets[np.any(self._offsets != 0, axis=1)]
        lengths = np.linalg.norm(nonzero @ self._frame, axis=1)
        self.shortest_translation = float(lengths.min()) if len(lengths) else float("inf")
        self.radius = 0.5 * self.shortest_translation

    def __repr__(self) -> str:
        return (
            f"MinimumImage(cell={np.round(self.cell, 4).tolist()}, pbc={self.pbc.tolist()}, "
            f"radius={self.radius:.3f} Å)"
        )

    def same_lattice_as(self, cell, pbc, atol: float = 1e-6) -> bool:
        """True when ``cell`` and ``pbc`` are this cell's (vectors equal within ``atol`` Å)."""
        cell = np.asarray(cell, dtype=np.float64)
        return (
            cell.shape == (3, 3)
            and np.array_equal(_as_pbc(pbc), self.pbc)
            and np.allclose(cell, self.cell, rtol=0.0, atol=atol)
        )

    # ------------------------------------------------------------------ minimum image
    def wrap(self, diff: torch.Tensor) -> torch.Tensor:
        """Difference vectors wrapped into the reduced cell centred on the origin, Å.

        The fractional coordinates along the periodic vectors of the reduced basis are
        brought into [-1/2, 1/2]. This is the nearest image for vectors shorter than
        half the smallest lattice-plane spacing of that basis, and never shorter than
        it; :meth:`shortest_vectors` is exact for all vectors. No gradient is tracked
        through the choice of image.

        Parameters
        ----------
        diff : torch.Tensor, shape (..., 3)

        Returns
        -------
        torch.Tensor, shape (..., 3)
        """
        return diff + self._image_shift(diff, nearest=False)

    def shortest_vectors(self, diff: torch.Tensor) -> torch.Tensor:
        """The nearest periodic image of each difference vector.

        Parameters
        ----------
        diff : torch.Tensor, shape (..., 3)
            Difference vectors ``r_i - r_j`` in Å.

        Returns
        -------
        torch.Tensor, shape (..., 3)
            ``diff + L`` with the lattice translation ``L`` that makes it shortest.
            ``L`` is chosen without gradient, so autograd differentiates through
            ``diff`` alone (the image is locally constant).
        """
        return diff + self._image_shift(diff, nearest=True)

    def _image_shift(self, diff: torch.Tensor, nearest: bool) -> torch.Tensor:
        """The lattice translation to add to ``diff``: wrapping, then (``nearest``) the best of
        the 27 (slab: 9) neighbouring images, which is exact in a Minkowski-reduced basis."""
        if not self.pbc.any():
            return torch.zeros_like(diff)
        kw = dict(dtype=diff.dtype, device=diff.device)
        with torch.no_grad():
            basis = torch.as_tensor(self._frame, **kw)
            frac = diff @ torch.as_tensor(self._inverse, **kw)
            periodic = torch.as_tensor(self._periodic_axes, device=diff.device)
            shift = torch.where(periodic, -torch.round(frac), torch.zeros_like(frac))
            if nearest:
                offsets = torch.as_tensor(self._offsets, **kw)  # (n_images, 3)
                candidates = (frac + shift)[..., None, :] + offsets  # (..., n_images, 3)
                lengths = torch.linalg.vector_norm(candidates @ basis, dim=-1)
                shift = shift + offsets[torch.argmin(lengths, dim=-1)]
            return shift @ basis

    def pair_vectors(self, positions: torch.Tensor) -> torch.Tensor:
        """Minimum-image vectors ``r_i - r_j + L_ij`` of all pairs ``i > j``, ``(n, n_pairs, 3)``, Å."""
        i, j = (
            torch.as_tensor(a, device=positions.device) for a in pair_indices(positions.shape[1])
        )
        return self.shortest_vectors(positions[:, i] - positions[:, j])

    def inverse_distances(self, positions: torch.Tensor, jacobian: bool = False):
        """Minimum-image inverse distances ``1 / |r_ij|`` (1/Å), optionally with their Jacobian.

        Parameters
        ----------
        positions : torch.Tensor, shape (n_frames, n_atoms, 3)
            Cartesian positions in Å, wrapped into the cell or not.
        jacobian : bool
            Also return the derivatives with respect to the positions.

        Returns
        -------
        features : torch.Tensor, shape (n_frames, n_pairs)
            Pairs as in :func:`~mlffkit.descriptors.inverse_distances.pair_indices`.
        jac : torch.Tensor, shape (n_frames, n_pairs, n_atoms, 3)
            ``d features / d positions`` in 1/Å², only with ``jacobian=True``.

        Raises
        ------
        ValueError
            If two atoms (or an atom and an image of another) sit on the same spot.
        """
        n_frames, n_atoms, _ = positions.shape
        vec = self.pair_vectors(positions)
        r = torch.linalg.vector_norm(vec, dim=-1)
        if torch.any(r == 0):
            raise ValueError(
                "two atoms of a frame sit on the same spot (minimum-image distance 0); fix "
                "those positions"
            )
        features = 1.0 / r
        if not jacobian:
            return features
        # the image shift is locally constant: d(1/r_ij)/d r_i = -r_ij / r^3, the opposite for r_j
        grad = vec * (features**3)[..., None]
        i, j = (torch.as_tensor(a, device=positions.device) for a in pair_indices(n_atoms))
        jac = positions.new_zeros(n_frames, len(i), n_atoms, 3)
        pairs = torch.arange(len(i), device=positions.device)
        jac[:, pairs, i] = -grad
        jac[:, pairs, j] = grad
        return features, jac

    # ------------------------------------------------------------------ cell size
    def nearest_neighbour_distances(self, positions) -> np.ndarray:
        """Each atom's distance to its nearest neighbour (any image, itself included), Å.

        Parameters
        ----------
        positions : array_like, shape (n_frames, n_atoms, 3) or (n_atoms, 3)

        Returns
        -------
        numpy.ndarray, shape (n_frames, n_atoms)
        """
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64))
        if pos.ndim == 2:
            pos = pos[None]
        n_frames, n_atoms, _ = pos.shape
        nearest = torch.full((n_frames, n_atoms), self.shortest_translation, dtype=pos.dtype)
        if n_atoms > 1:
            r = torch.linalg.vector_norm(self.pair_vectors(pos), dim=-1)
            i, j = (torch.as_tensor(a) for a in pair_indices(n_atoms))
            full = torch.full((n_frames, n_atoms, n_atoms), float("inf"), dtype=pos.dtype)
            full[:, i, j] = r
            full[:, j, i] = r
            nearest = torch.minimum(nearest, full.min(dim=-1).values)
        return nearest.numpy()

    def check_cell_size(self, positions, neighbour_shell: float = NEIGHBOUR_SHELL) -> None:
        """Raise unless every atom's first-neighbour shell fits within the minimum-image radius.

        The shell of atom i reaches ``neighbour_shell`` × its nearest-neighbour
        distance (any image); it must be shorter than :attr:`radius` in every frame,
        so that each partner in it has exactly one image there, the minimum image.

        Parameters
        ----------
        positions : array_like, shape (n_frames, n_atoms, 3) or (n_atoms, 3)
            Frames in this cell, Å.
        neighbour_shell : float
            Reach of the first-neighbour shell in units of the nearest-neighbour distance.

        Raises
        ------
        ValueError
            Naming the cell's minimum-image radius, the atom whose shell does not fit,
            and how many repeats of the cell would make it fit.
        """
        if not self.pbc.any():
            return
        nearest = self.nearest_neighbour_distances(positions)
        frame, atom = np.unravel_index(np.argmax(nearest), nearest.shape)
        reach = neighbour_shell * float(nearest[frame, atom])
        if reach < self.radius:
            return
        # repeats along each periodic vector that bring the shortest translation above 2 × reach
        lengths = np.linalg.norm(self.cell, axis=1)
        repeat = [
            int(np.ceil(2.0 * reach / min(length, self.shortest_translation))) if p else 1
            for p, length in zip(self.pbc, lengths, strict=True)
        ]
        raise ValueError(
            f"the cell is too small for the minimum-image convention: its shortest lattice "
            f"translation is {self.shortest_translation:.2f} Å, so only partners closer than "
            f"R_mic = {self.radius:.2f} Å have a single nearest image, but the first-neighbour "
            f"shell of atom {atom} (frame {frame}) reaches {reach:.2f} Å ({neighbour_shell:g} × "
            f"its nearest-neighbour distance {nearest[frame, atom]:.2f} Å). One distance per pair "
            f"cannot describe that neighbourhood. Use a larger supercell, e.g. "
            f"atoms.repeat({tuple(repeat)}), and train on frames of it"
        )


def periodic_inverse_distances(positions: torch.Tensor, cell, pbc=True, jacobian: bool = False):
    """Minimum-image inverse distances ``1 / |r_ij|`` (1/Å) of frames in one cell.

    A shortcut for ``MinimumImage(cell, pbc).inverse_distances(positions, jacobian)``;
    use :class:`MinimumImage` directly to set a cell up once for many calls.

    Parameters
    ----------
    positions : torch.Tensor, shape (n_frames, n_atoms, 3)
        Cartesian positions in Å.
    cell : array_like, shape (3, 3)
        Lattice vectors as rows, Å.
    pbc : bool or array_like of bool, shape (3,)
        Periodic directions.
    jacobian : bool
        Also return the Jacobian ``(n_frames, n_pairs, n_atoms, 3)`` in 1/Å².

    Returns
    -------
    features : torch.Tensor, shape (n_frames, n_pairs)
    jac : torch.Tensor, shape (n_frames, n_pairs, n_atoms, 3), only with ``jacobian=True``
    """
    return MinimumImage(cell, pbc).inverse_distances(positions, jacobian=jacobian)
