"""The Coulomb matrix (Rupp et al., Phys. Rev. Lett. 108, 058301, 2012) in three variants.

``C_ii = 0.5 Z_i^2.4`` and ``C_ij = Z_i Z_j / r_ij`` with ``r_ij`` in Å (the
original uses Bohr; the unit only rescales the off-diagonal entries).

Variants and their symmetry under permutations of like atoms:

``"full"``
    The lower triangle (with the diagonal) in the atom order of the frame: **not**
    permutation invariant.
``"sorted"``
    Rows and columns ordered by decreasing row norm before taking the triangle:
    permutation invariant, but the order can switch between nearby frames, so the
    features (and a model on them) jump there.
``"eigenvalues"``
    The eigenvalues sorted by decreasing magnitude: permutation invariant and
    continuous, but only ``n_atoms`` numbers, which cannot tell all geometries apart.

All three are invariant under rotations and translations.
"""

from __future__ import annotations

import numpy as np
import torch

from mlffkit.descriptors.base import Descriptor

VARIANTS = ("full", "sorted", "eigenvalues")


def _pair_terms(positions: torch.Tensor, numbers: torch.Tensor):
    """The full matrices ``C`` (n, N, N), ``Z_i Z_j / r^3`` (n, N, N) and ``r_i - r_j`` (n, N, N, 3)."""
    n_atoms = positions.shape[1]
    z = numbers.to(positions.dtype)
    diff = positions[:, :, None, :] - positions[:, None, :, :]
    eye = torch.eye(n_atoms, dtype=torch.bool, device=positions.device)
    r = torch.linalg.vector_norm(diff, dim=-1).masked_fill(eye, 1.0)
    if torch.any(r == 0):
        raise ValueError(
            "two atoms of a frame sit on the same spot (distance 0); fix those positions"
        )
    zz = z[:, None] * z[None, :]
    cm = (zz / r).masked_fill(eye, 0.0) + torch.diag(0.5 * z**2.4)
    g = (zz / r**3).masked_fill(eye, 0.0)
    return cm, g, diff


def coulomb_matrix(
    positions: torch.Tensor, numbers: torch.Tensor, variant: str = "sorted", jacobian: bool = False
):
    """Coulomb-matrix features (e²/Å units: ``Z_i Z_j / r_ij``), optionally with their Jacobian.

    Parameters
    ----------
    positions : torch.Tensor, shape (n_frames, n_atoms, 3)
        Positions in Å.
    numbers : torch.Tensor of int, shape (n_atoms,)
        Atomic numbers.
    variant : {"full", "sorted", "eigenvalues"}
        See the module documentation.
    jacobian : bool
        Also return ``d features / d positions``.

    Returns
    -------
    features : torch.Tensor
        ``(n_frames, n_atoms (n_atoms + 1) / 2)`` for ``"full"`` and ``"sorted"``
        (lower triangle with diagonal, row by row), ``(n_frames, n_atoms)`` for
        ``"eigenvalues"``.
    jac : torch.Tensor, shape (n_frames, n_features, n_atoms, 3)
        Only with ``jacobian=True``. For ``"sorted"`` it is the derivative at fixed
        order (the order is piecewise constant); for ``"eigenvalues"`` it is
        undefined where eigenvalues are degenerate.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown Coulomb matrix variant {variant!r}; use one of {VARIANTS}")
    n_frames, n_atoms, _ = positions.shape
    cm, g, diff = _pair_terms(positions, numbers)
    if variant == "eigenvalues":
        return _eigenvalues(cm, g, diff, jacobian)

    ti, tj = (torch.as_tensor(a, device=positions.device) for a in np.tril_indices(n_atoms))
    if variant == "full":
        p = ti.expand(n_frames, -1)
        q = tj.expand(n_frames, -1)
    else:
        order = torch.argsort(
            torch.linalg.vector_norm(cm, dim=-1), dim=1, descending=True, stable=True
        )
        p, q = order[:, ti], order[:, tj]
    frame = torch.arange(n_frames, device=positions.device)[:, None]
    features = cm[frame, p, q]
    if not jacobian:
        return features
    # d C_pq / d r_p = -Z_p Z_q (r_p - r_q) / r^3, opposite for r_q; zero on the diagonal
    grad = g[frame, p, q][..., None] * diff[frame, p, q]
    jac = positions.new_zeros(n_frames, len(ti), n_atoms, 3)
    entry = torch.arange(len(ti), device=positions.device)[None, :]
    jac[frame, entry, p] = -grad
    jac[frame, entry, q] += grad  # += keeps the zero of diagonal entries (p == q)
    return features, jac


def _eigenvalues(cm, g, diff, jacobian):
    values, vectors = torch.linalg.eigh(cm)
    order = torch.argsort(values.abs(), dim=1, descending=True, stable=True)
    values = torch.gather(values, 1, order)
    vectors = torch.gather(vectors, 2, order[:, None, :].expand_as(vectors))
    if not jacobian:
        return values
    # d lambda_k / d r_a = v_k^T (dC/dr_a) v_k = -2 v_ak sum_j v_jk Z_a Z_j (r_a - r_j) / r_aj^3
    weighted = g[..., None] * diff  # (n, a, j, 3)
    t = torch.einsum("njk,najc->nkac", vectors, weighted)
    jac = -2.0 * vectors.transpose(1, 2)[..., None] * t
    return values, jac


class CoulombMatrix(Descriptor):
    """Coulomb-matrix descriptor: ``"full"``, ``"sorted"`` (default) or ``"eigenvalues"``.

    A scikit-learn transformer (``fit`` learns the molecule). Rotation and
    translation invariant; ``"sorted"`` and ``"eigenvalues"`` are also invariant
    under permutations of like atoms, ``"full"`` is not. See
    :mod:`mlffkit.descriptors.coulomb` for the trade-offs.

    Parameters
    ----------
    variant : {"full", "sorted", "eigenvalues"}
    numbers : array_like, optional
        Atomic numbers, needed when frames come as bare position arrays.
    device : str or torch.device
        Where to compute.

    Examples
    --------
    >>> from sklearn.kernel_ridge import KernelRidge
    >>> from sklearn.pipeline import make_pipeline
    >>> model = make_pipeline(CoulombMatrix(numbers=ds.numbers), KernelRidge(kernel="laplacian"))  # doctest: +SKIP
    >>> model.fit(ds.positions, ds.energies)                                                      # doctest: +SKIP
    """

    needs_numbers = True

    def __init__(self, variant="sorted", numbers=None, device="cpu"):
        self.variant = variant
        super().__init__(numbers=numbers, device=device)

    def _n_features(self, n_atoms: int) -> int:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"unknown Coulomb matrix variant {self.variant!r}; use one of {VARIANTS}"
            )
        return n_atoms if self.variant == "eigenvalues" else n_atoms * (n_atoms + 1) // 2

    def _compute(self, positions, numbers, jacobian):
        return coulomb_matrix(positions, numbers, variant=self.variant, jacobian=jacobian)
