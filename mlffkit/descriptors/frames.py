"""Turn what users pass (a Dataset, ase.Atoms, arrays) into positions and atomic numbers.

Descriptors and models accept the same inputs, so they share this one reader.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from mlffkit.data.dataset import Dataset, as_atomic_numbers


def frames_from(X) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions ``(n_frames, n_atoms, 3)`` in Å and atomic numbers ``(n_atoms,)`` of ``X``.

    Parameters
    ----------
    X : Dataset, ase.Atoms, sequence of ase.Atoms, array_like or torch.Tensor
        Frames that all have the same atoms in the same order. Arrays are
        positions in Å shaped ``(n_frames, n_atoms, 3)``, ``(n_atoms, 3)`` (one
        frame) or ``(n_frames, 3 * n_atoms)`` (flattened, as scikit-learn passes
        rows); they carry no atomic numbers.

    Returns
    -------
    positions : numpy.ndarray, float64, shape (n_frames, n_atoms, 3)
    numbers : numpy.ndarray of int, shape (n_atoms,), or None for a bare array

    Raises
    ------
    ValueError
        For frames with different atoms, periodic frames (distances would be
        silently wrong: everything here treats a frame as an isolated molecule),
        an empty input or a shape that is not positions.
    """
    if _is_periodic(X):
        raise ValueError(
            "the frames are periodic, but these descriptors and models treat each frame as an "
            "isolated molecule (no minimum-image distances); use molecular frames (pbc=False)"
        )
    if isinstance(X, Dataset):
        if not X.is_uniform:
            raise ValueError(
                "the frames of this dataset have different atoms; descriptors and kernel "
                "models need one molecule in one atom order: select frames of one kind"
            )
        return np.asarray(X.positions, dtype=np.float64), X.numbers.copy()
    if isinstance(X, Atoms):
        return X.get_positions()[None].astype(np.float64), X.get_atomic_numbers().copy()
    if isinstance(X, list | tuple) and X and all(isinstance(a, Atoms) for a in X):
        numbers = X[0].get_atomic_numbers()
        for i, at in enumerate(X):
            if not np.array_equal(at.get_atomic_numbers(), numbers):
                raise ValueError(
                    f"structure {i} has atoms {at.get_chemical_formula()} in another order or of "
                    f"other elements than structure 0 ({X[0].get_chemical_formula()}); pass frames "
                    "of one molecule with the same atom order"
                )
        return np.stack([at.get_positions() for at in X]).astype(np.float64), numbers.copy()
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    pos = np.asarray(X, dtype=np.float64)
    if pos.ndim == 2 and pos.shape[1] == 3:
        pos = pos[None]
    elif pos.ndim == 2 and pos.shape[1] % 3 == 0 and pos.shape[1] > 0:
        pos = pos.reshape(len(pos), -1, 3)
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[0] == 0 or pos.shape[1] == 0:
        raise ValueError(
            f"positions have shape {np.shape(X)}; expected (n_frames, n_atoms, 3) in Å, "
            "(n_atoms, 3) for one frame, a Dataset or ase.Atoms"
        )
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or infinite values; remove those frames")
    return pos, None


def _is_periodic(X) -> bool:
    if isinstance(X, Dataset):
        return X.is_periodic
    if isinstance(X, Atoms):
        return bool(X.pbc.any())
    if isinstance(X, list | tuple):
        return any(isinstance(a, Atoms) and a.pbc.any() for a in X)
    return False


def check_numbers(numbers: np.ndarray | None, expected: np.ndarray, what: str) -> None:
    """Raise unless the frames' atoms are ``expected``, in the same order.

    ``numbers`` None (a bare positions array) only has its atom count checked by
    the caller.
    """
    if numbers is None:
        return
    if len(numbers) != len(expected) or not np.array_equal(numbers, expected):
        raise ValueError(
            f"the frames have atoms {_formula_list(numbers)} but {what} was set up for "
            f"{_formula_list(expected)}; frames must have the same atoms in the same order "
            "(reorder the atoms, or fit a new model for this molecule)"
        )


def check_atom_count(positions: np.ndarray, n_atoms: int, what: str) -> None:
    """Raise unless the frames have ``n_atoms`` atoms."""
    if positions.shape[1] != n_atoms:
        raise ValueError(
            f"the frames have {positions.shape[1]} atoms but {what} was set up for {n_atoms}; "
            "pass frames of the same molecule"
        )


def atomic_numbers(numbers) -> np.ndarray:
    """Validated atomic numbers ``(n_atoms,)`` from numbers or symbols."""
    z = as_atomic_numbers(numbers)
    if z.ndim != 1:
        raise ValueError(f"numbers must be one atomic number per atom, got shape {z.shape}")
    return z


def _formula_list(numbers) -> str:
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[int(z)] for z in numbers]
    return "[" + " ".join(symbols) + "]" if len(symbols) <= 30 else f"({len(symbols)} atoms)"
