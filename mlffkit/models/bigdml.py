r"""BIGDML: a global GDML force field of a periodic supercell (Sauceda et al., Nat. Commun. 13, 3733, 2022).

BIGDML ("Bravais-inspired gradient-domain machine learning") is sGDML for materials:

* the descriptor is the set of inverse **minimum-image** distances between all pairs
  of atoms of the supercell (:mod:`mlffkit.descriptors.periodic`), so the model sees
  the whole supercell at once, with no cutoff radius and no decomposition into atomic
  energies;
* the kernel is symmetrised over the **space group of the supercell** — the lattice
  translations that map it onto itself and the point operations — found from the
  data as atom permutations (:mod:`mlffkit.crystal_symmetry`). Each training frame
  then stands for all its symmetry-equivalent copies, data augmentation at no extra
  memory, which is why 10–200 frames suffice.

Everything else — the Matérn 5/2 force-field kernel, the closed-form Cholesky solve,
energies by analytic integration — is :class:`~mlffkit.models.GDML`'s.

The model is tied to its training cell: it predicts frames of that supercell (same
atoms, same lattice vectors, same periodic directions), wrapped or not. A larger
replica of the cell is a different system with a different descriptor; it is
refused with an error, not extrapolated.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlffkit.crystal_symmetry import find_crystal_permutations
from mlffkit.data.dataset import Dataset
from mlffkit.descriptors.frames import check_atom_count, check_numbers, frames_from
from mlffkit.descriptors.periodic import MinimumImage
from mlffkit.models.base import as_dataset
from mlffkit.models.gdml import GDML
from mlffkit.symmetry import resolve_permutations

#: cells that differ by less than this (Å, per component) are the same cell
_CELL_ATOL = 1e-6


def _format_cell(cell: np.ndarray) -> str:
    cell = np.asarray(cell)
    if np.allclose(cell, np.diag(np.diag(cell))):
        return f"{np.round(np.diag(cell), 3).tolist()} Å (orthorhombic)"
    return f"{np.round(cell, 3).tolist()} Å"


class BIGDML(GDML):
    """Global symmetrised GDML force field of a periodic supercell (bulk or slab).

    Parameters
    ----------
    sigma : float
        Length scale of the Matérn 5/2 kernel, in descriptor units (1/Å). Choose it
        on validation data (:func:`~mlffkit.models.select_sigma`); for the 31-atom
        copper cell values of 5–50 are sensible.
    lam : float
        Ridge regularisation on the kernel matrix's diagonal.
    use_energies_constraint : bool
        Also fit the energies (extra rows of the linear system).
    permutations : "auto", None, "none" or array_like of int (n_perms, n_atoms)
        ``"auto"``: the space group of the supercell that the training frames'
        :func:`~mlffkit.crystal_symmetry.mean_structure` shows
        (:func:`~mlffkit.crystal_symmetry.find_crystal_permutations`); None or
        ``"none"``: no symmetries (periodic GDML); an array: these permutations (or
        generators of a group).
    symmetry_tol : float, optional
        Site-matching tolerance of the symmetry search, Å; default 0.4 × the shortest
        distance between like atoms (:func:`~mlffkit.crystal_symmetry.default_tolerance`).
    solver, preconditioner, rank, tol, max_iter, memory_budget, device, batch_size
        As for :class:`~mlffkit.models.GDML` (dense Cholesky or preconditioned CG).

    Attributes
    ----------
    cell_ : numpy.ndarray, shape (3, 3)
        The training cell (lattice vectors as rows), Å.
    pbc_ : numpy.ndarray of bool, shape (3,)
        Its periodic directions.
    permutations_ : numpy.ndarray of int, shape (n_perms, n_atoms)
        The symmetry group used, identity first.
    integration_constant_, diagnostics_, has_energy_reference_
        As for :class:`~mlffkit.models.GDML`.

    Examples
    --------
    >>> cu = mlffkit.data.load("cu_vacancy")                     # doctest: +SKIP
    >>> model = BIGDML(sigma=20).fit(cu[:100])                   # doctest: +SKIP
    >>> len(model.permutations_)                                 # doctest: +SKIP
    48
    >>> atoms = cu[500]; atoms.calc = model.calculator()         # doctest: +SKIP
    """

    model_type = "BIGDML"

    def display_name(self) -> str:
        """``"BIGDML (G symmetries)"``, or ``"periodic GDML"`` without symmetries."""
        n_perms = len(getattr(self, "permutations_", ()))
        return f"BIGDML ({n_perms} symmetries)" if n_perms > 1 else "periodic GDML"

    def __init__(
        self,
        sigma,
        *,
        lam=1e-10,
        use_energies_constraint=False,
        permutations="auto",
        symmetry_tol=None,
        solver="auto",
        preconditioner="pivoted_cholesky",
        rank=None,
        tol=1e-4,
        max_iter=None,
        memory_budget=None,
        device="cpu",
        batch_size=None,
    ):
        super().__init__(
            sigma,
            lam=lam,
            use_energies_constraint=use_energies_constraint,
            permutations=permutations,
            solver=solver,
            preconditioner=preconditioner,
            rank=rank,
            tol=tol,
            max_iter=max_iter,
            memory_budget=memory_budget,
            device=device,
            batch_size=batch_size,
        )
        self.symmetry_tol = symmetry_tol

    # ------------------------------------------------------------------ training
    def fit(self, train, y=None, *, progress: bool = True) -> BIGDML:
        """Train on periodic frames of one supercell.

        Parameters
        ----------
        train : Dataset or list of ase.Atoms
            Frames with forces (energies fix the integration constant), all in one
            cell with the same periodic directions.
        y : None
            Unused (scikit-learn's slot for targets: the labels are in ``train``).
        progress : bool
            Show a progress bar for the kernel assembly.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For frames without a cell or periodicity, frames in different cells, a
            cell too small for the minimum-image convention (see
            :meth:`~mlffkit.descriptors.periodic.MinimumImage.check_cell_size`), and
            everything :meth:`GDML.fit` refuses.
        """
        self._refuse_second_dataset(y)
        train = self._prepare_training(train)
        cell, pbc = _one_cell(train)
        mic = MinimumImage(cell, pbc)
        mic.check_cell_size(train.positions)
        self.cell_, self.pbc_, self._mic = cell, pbc, mic
        super().fit(train, progress=progress)
        return self

    def _prepare_training(self, train, needs: tuple[str, ...] = ("forces",)) -> Dataset:
        train = as_dataset(train)
        if not train.is_uniform:
            raise ValueError(
                "the training frames have different atoms; a BIGDML model needs frames of one "
                "supercell, with the same atoms in the same order"
            )
        # The base checks (labels present, no repeated frames) read the frames as molecules
        # and refuse periodic ones; none of them depends on the cell, so they run on a copy
        # without it.
        bare = Dataset(train.numbers, train.positions, train.energies, train.forces)
        super()._prepare_training(bare, needs)
        return train

    def _check_params(self) -> None:
        super()._check_params()
        tol = self.symmetry_tol
        if tol is not None and (not np.isscalar(tol) or not np.isfinite(tol) or tol <= 0):
            raise ValueError(
                f"symmetry_tol must be a positive distance in Å or None (the default), got {tol!r}"
            )

    def _resolve_permutations(self, positions: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        return resolve_permutations(
            self.permutations,
            numbers,
            lambda: find_crystal_permutations(
                positions, numbers, self.cell_, self.pbc_, tol=self.symmetry_tol
            ),
            "the supercell's space group",
        )

    def _descriptor(self, positions):
        """Minimum-image inverse distances in the training cell and their Jacobian."""
        return self._mic.inverse_distances(positions, jacobian=True)

    # ------------------------------------------------------------------ prediction
    def _positions(self, X) -> np.ndarray:
        """Positions ``(n, N, 3)`` of frames in the training cell; anything else is refused."""
        self._check_fitted()
        what = f"this {type(self).__name__} model"
        if isinstance(X, Dataset | Atoms) or (
            isinstance(X, list | tuple) and X and all(isinstance(a, Atoms) for a in X)
        ):
            positions, numbers, cells, pbcs = _periodic_frames(X)
            for cell, pbc in zip(cells, pbcs, strict=True):
                self._check_cell(cell, pbc, positions.shape[1])
        else:  # bare positions carry no cell: they are taken to be in the training cell
            positions, numbers = frames_from(X)
        check_atom_count(positions, len(self.numbers_), what)
        check_numbers(numbers, self.numbers_, what)
        return positions

    def _check_cell(self, cell, pbc, n_atoms: int) -> None:
        if cell is None or not np.any(pbc):
            raise ValueError(
                f"the frames are not periodic, but this {self.model_type} model describes the "
                f"periodic cell {_format_cell(self.cell_)} with pbc {self.pbc_.tolist()}; give "
                "frames with that cell and pbc (atoms.set_cell(...), atoms.pbc = ...)"
            )
        if self._mic.same_lattice_as(cell, pbc, _CELL_ATOL):
            return
        trained = (
            f"this {self.model_type} model was trained on {len(self.numbers_)} atoms in the cell "
            f"{_format_cell(self.cell_)} with pbc {self.pbc_.tolist()}"
        )
        given = (
            f"the frames have {n_atoms} atoms in the cell {_format_cell(cell)} with pbc "
            f"{np.asarray(pbc).tolist()}"
        )
        ratio = np.asarray(cell) @ np.linalg.inv(self.cell_)  # diag(n) for an n-fold replica
        repeat = np.round(np.diag(ratio)).astype(int)
        is_replica = (
            np.allclose(ratio, np.diag(repeat), atol=1e-6)
            and np.all(repeat >= 1)
            and n_atoms == len(self.numbers_) * int(np.prod(repeat))
        )
        if is_replica:
            raise ValueError(
                f"{given}: a {'×'.join(map(str, repeat))} replica of the training cell, but "
                f"{trained}. A BIGDML model is a global model of one supercell (one descriptor "
                "entry per pair of its atoms) and cannot predict a larger one; train a model on "
                "frames of the larger cell, or predict on frames of the training cell"
            )
        raise ValueError(
            f"{given}, but {trained}. The minimum-image descriptor is defined by that lattice: "
            "predict frames in the training cell (a strained or different cell needs a model "
            "trained on frames of it)"
        )

    # ------------------------------------------------------------------ persistence
    def _state(self):
        attributes, arrays = super()._state()
        arrays = {**arrays, "cell": self.cell_, "pbc": self.pbc_}
        return attributes, arrays

    def _set_state(self, attributes, arrays):
        self.cell_ = np.asarray(arrays["cell"], dtype=np.float64)
        self.pbc_ = np.asarray(arrays["pbc"], dtype=bool)
        self._mic = MinimumImage(self.cell_, self.pbc_)
        super()._set_state(attributes, arrays)


# ----------------------------------------------------------------------------- frames
def _one_cell(train: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The cell ``(3, 3)`` and pbc ``(3,)`` shared by all frames of a training set."""
    if train.cell is None or not train.is_periodic:
        raise ValueError(
            "the training frames have no periodic cell; BIGDML models periodic materials "
            "(give frames with a cell and pbc, e.g. mlffkit.data.load('cu_vacancy')); for "
            "molecules use GDML"
        )
    cell, pbc = train.cell[0], train.pbc[0]
    same = np.all(np.abs(train.cell - cell) <= _CELL_ATOL, axis=(1, 2)) & np.all(
        train.pbc == pbc, axis=1
    )
    if not same.all():
        bad = int(np.flatnonzero(~same)[0])
        raise ValueError(
            f"the training frames are not all in one cell: frame {bad} has cell "
            f"{_format_cell(train.cell[bad])} with pbc {train.pbc[bad].tolist()}, frame 0 "
            f"{_format_cell(cell)} with pbc {pbc.tolist()}. A BIGDML model describes one "
            "supercell: train on frames of one cell (e.g. NVT data), one model per cell"
        )
    return np.asarray(cell, dtype=np.float64).copy(), np.asarray(pbc, dtype=bool).copy()


def _periodic_frames(X):
    """Positions, numbers and each frame's cell and pbc of a Dataset, Atoms or list of Atoms."""
    if isinstance(X, Dataset):
        if not X.is_uniform:
            raise ValueError(
                "the frames of this dataset have different atoms; a BIGDML model needs frames "
                "of its supercell, with the same atoms in the same order"
            )
        cells = [None] * len(X) if X.cell is None else list(X.cell)
        return np.asarray(X.positions, dtype=np.float64), X.numbers.copy(), cells, list(X.pbc)
    images = [X] if isinstance(X, Atoms) else list(X)
    numbers = images[0].get_atomic_numbers()
    for i, at in enumerate(images):
        if len(at) != len(numbers) or not np.array_equal(at.get_atomic_numbers(), numbers):
            raise ValueError(
                f"structure {i} ({at.get_chemical_formula()}) has other atoms than structure 0 "
                f"({images[0].get_chemical_formula()}); pass frames of one supercell"
            )
    positions = np.stack([at.get_positions() for at in images]).astype(np.float64)
    cells = [at.cell.array.copy() if at.cell.rank else None for at in images]
    return positions, numbers.copy(), cells, [at.pbc.copy() for at in images]
