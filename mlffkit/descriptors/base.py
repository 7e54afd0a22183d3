"""The descriptor base class: a scikit-learn transformer from positions to feature vectors.

A descriptor maps a frame's Cartesian positions ``(n_atoms, 3)`` in Å to a fixed-length
vector. Subclasses implement one batched torch function that returns the features
and, on request, their Jacobian ``(n_frames, n_features, n_atoms, 3)``; forces of
a model built on the descriptor follow from that Jacobian by the chain rule.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from mlffkit.descriptors.frames import atomic_numbers, check_atom_count, check_numbers, frames_from


class Descriptor(TransformerMixin, BaseEstimator):
    """Base class of descriptors; see :class:`InverseDistances` and :class:`CoulombMatrix`.

    Descriptors take a :class:`~mlffkit.data.Dataset`, :class:`ase.Atoms`, a list of
    Atoms or a positions array (Å) ``(n_frames, n_atoms, 3)`` or ``(n_frames, 3 n_atoms)``.
    ``fit`` only learns the molecule (atomic numbers, atom count); a descriptor
    that was not fitted takes the molecule from the frames it is given.

    Parameters
    ----------
    numbers : array_like, optional
        Atomic numbers of the molecule (needed with bare position arrays by
        descriptors that use them).
    device : str or torch.device
        Where to compute; ``transform`` and ``jacobian`` return NumPy arrays.
    """

    #: whether the features depend on the atomic numbers
    needs_numbers = False

    def __init__(self, numbers=None, device="cpu"):
        self.numbers = numbers
        self.device = device

    # ------------------------------------------------------------------ subclass API
    def _n_features(self, n_atoms: int) -> int:
        raise NotImplementedError

    def _compute(self, positions: torch.Tensor, numbers: torch.Tensor, jacobian: bool):
        """Features ``(n, d)`` and, with ``jacobian``, ``(n, d, n_atoms, 3)`` (torch, float64)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scikit-learn
    def fit(self, X, y=None):
        """Learn the molecule (atomic numbers and atom count) from ``X``.

        Parameters
        ----------
        X : Dataset, ase.Atoms, list of Atoms or array_like (n_frames, n_atoms, 3)
        y : ignored

        Returns
        -------
        self
        """
        positions, numbers = frames_from(X)
        self.numbers_ = self._resolve_numbers(numbers, positions.shape[1])
        self.n_atoms_ = positions.shape[1]
        self.n_features_out_ = self._n_features(self.n_atoms_)
        return self

    def transform(self, X) -> np.ndarray:
        """Features of the frames ``X``, shape ``(n_frames, n_features)``, float64."""
        return self.compute(X)[0].cpu().numpy()

    def jacobian(self, X) -> np.ndarray:
        """Derivatives of the features with respect to the positions.

        Returns
        -------
        numpy.ndarray, shape (n_frames, n_features, n_atoms, 3)
            In feature units per Å.
        """
        return self.compute(X, jacobian=True)[1].cpu().numpy()

    # ------------------------------------------------------------------ torch API
    def compute(self, X, jacobian: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (and Jacobian) as float64 torch tensors on ``device``.

        Returns
        -------
        features : torch.Tensor, shape (n_frames, n_features)
        jac : torch.Tensor, shape (n_frames, n_features, n_atoms, 3), or None
        """
        positions, numbers = self._prepare(X)
        out = self._compute(positions, numbers, jacobian)
        return (out[0], out[1]) if jacobian else (out, None)

    def _prepare(self, X) -> tuple[torch.Tensor, torch.Tensor]:
        positions, numbers = frames_from(X)
        if hasattr(self, "numbers_"):
            check_atom_count(positions, self.n_atoms_, type(self).__name__)
            check_numbers(numbers, self.numbers_, type(self).__name__)
            numbers = self.numbers_
        else:
            numbers = self._resolve_numbers(numbers, positions.shape[1])
        device = torch.device(self.device)
        pos = torch.as_tensor(positions, dtype=torch.float64, device=device)
        z = torch.as_tensor(
            numbers if numbers is not None else np.zeros(positions.shape[1], np.int64),
            device=device,
        )
        return pos, z

    def _resolve_numbers(self, numbers, n_atoms: int):
        """The atomic numbers to use: the frames' and/or the ``numbers`` parameter, consistent."""
        given = None if self.numbers is None else atomic_numbers(self.numbers)
        if given is not None and len(given) != n_atoms:
            raise ValueError(
                f"numbers has {len(given)} entries but the frames have {n_atoms} atoms"
            )
        if given is not None and numbers is not None:
            check_numbers(numbers, given, f"{type(self).__name__}(numbers=...)")
        resolved = numbers if numbers is not None else given
        if resolved is None and self.needs_numbers:
            raise ValueError(
                f"{type(self).__name__} needs the atomic numbers: pass a Dataset or ase.Atoms, "
                f"or give them as {type(self).__name__}(numbers=...)"
            )
        return resolved
