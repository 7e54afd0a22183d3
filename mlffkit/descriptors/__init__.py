"""Descriptors: fixed-length, rotation- and translation-invariant vectors of a molecule.

Each descriptor is a scikit-learn transformer (``fit``/``transform`` on a Dataset,
ase.Atoms or positions in Å) backed by a batched torch function that also returns
the Jacobian ``(n_frames, n_features, n_atoms, 3)``, from which models get forces.

======================  =====================  ===========================
descriptor              features               invariant under permutation
======================  =====================  ===========================
``InverseDistances``    ``1/r_ij``, i > j      no (sGDML adds it in the kernel)
``CoulombMatrix("full")``  triangle of C        no
``CoulombMatrix("sorted")``  sorted triangle    yes (piecewise; jumps where the order flips)
``CoulombMatrix("eigenvalues")``  spectrum      yes (but not complete)
======================  =====================  ===========================

>>> from mlffkit.descriptors import InverseDistances
>>> X = InverseDistances().fit_transform(ds)          # doctest: +SKIP
"""

from mlffkit.descriptors.base import Descriptor
from mlffkit.descriptors.coulomb import CoulombMatrix, coulomb_matrix
from mlffkit.descriptors.frames import frames_from
from mlffkit.descriptors.inverse_distances import (
    InverseDistances,
    inverse_distances,
    pair_indices,
    pair_permutation,
)

#: descriptor names accepted by :func:`make_descriptor` (and by models' ``descriptor=``)
NAMES = {
    "inverse_distances": lambda: InverseDistances(),
    "coulomb_full": lambda: CoulombMatrix("full"),
    "coulomb_sorted": lambda: CoulombMatrix("sorted"),
    "coulomb_eigenvalues": lambda: CoulombMatrix("eigenvalues"),
}


def make_descriptor(spec) -> Descriptor:
    """A fresh descriptor from a name in :data:`NAMES` or a copy of a Descriptor instance.

    Raises
    ------
    ValueError
        For an unknown name or an object that is not a Descriptor.
    """
    from sklearn.base import clone

    if isinstance(spec, Descriptor):
        return clone(spec)
    if isinstance(spec, str) and spec in NAMES:
        return NAMES[spec]()
    raise ValueError(
        f"unknown descriptor {spec!r}; use one of {sorted(NAMES)} or a Descriptor instance "
        "such as CoulombMatrix('eigenvalues')"
    )


__all__ = [
    "NAMES",
    "CoulombMatrix",
    "Descriptor",
    "InverseDistances",
    "coulomb_matrix",
    "frames_from",
    "inverse_distances",
    "make_descriptor",
    "pair_indices",
    "pair_permutation",
]
