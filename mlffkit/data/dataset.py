"""The :class:`Dataset`: structures with their energies and forces, in eV and Å.

Storage is flat, the way graph neural networks batch molecules: all atoms of all
frames are stacked into one array and ``n_atoms`` says how many belong to each frame.
When every frame has the same atoms in the same order (MD data, the common case),
:attr:`Dataset.positions` and :attr:`Dataset.forces` are zero-copy
``(n_frames, n_atoms, 3)`` views of that storage, which is what kernel methods use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols

from mlffkit import units

_MAX_Z = len(chemical_symbols) - 1


def _where(mask: np.ndarray, what: str) -> str:
    """Describe where a boolean problem mask is true (first index and count)."""
    bad = np.argwhere(mask)
    first = tuple(int(i) for i in bad[0])
    loc = first[0] if len(first) == 1 else first
    return f"{what} has {len(bad)} non-finite value(s), the first at index {loc}"


def as_atomic_numbers(numbers, where: str = "numbers") -> np.ndarray:
    """Atomic numbers from numbers or element symbols, validated.

    Parameters
    ----------
    numbers : array_like of int or str
        Atomic numbers (1..118) or element symbols ("H", "C", ...).

    Raises
    ------
    ValueError
        For an unknown symbol or a number outside 1..118, naming its position.
    """
    arr = np.asarray(numbers)
    if arr.dtype.kind in "US":
        out = np.empty(arr.shape, dtype=np.int64)
        for idx, sym in np.ndenumerate(arr):
            sym = sym.decode() if isinstance(sym, bytes) else str(sym)
            if sym not in chemical_symbols[1:]:
                raise ValueError(
                    f"unknown element symbol {sym!r} in {where} at position {idx if len(idx) > 1 else idx[0]}; "
                    "use standard symbols such as 'H', 'C', 'Cu'"
                )
            out[idx] = chemical_symbols.index(sym)
        return out
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{where} must be whole atomic numbers, got {arr.dtype} values")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{where} must be atomic numbers or element symbols, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 1) | (arr > _MAX_Z)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"unknown element: atomic number {int(arr[bad][0])} in {where} at position "
            f"{pos[0] if len(pos) == 1 else pos}; atomic numbers run from 1 to {_MAX_Z}"
        )
    return arr


def _finite(arr: np.ndarray, what: str) -> None:
    ok = np.isfinite(arr)
    if not ok.all():
        raise ValueError(_where(~ok, what) + "; remove or fix those frames before building a Dataset")


class Dataset:
    """Structures with reference energies and forces, stored in eV and Å.

    Parameters
    ----------
    numbers : array_like
        Atomic numbers (or element symbols). Shape ``(n_atoms,)`` when all frames
        share the same atoms, ``(n_frames, n_atoms)`` per frame, or a sequence of
        ``(n_atoms_i,)`` arrays for frames of different sizes.
    positions : array_like
        Cartesian positions in ``length_unit``: ``(n_frames, n_atoms, 3)`` or a
        sequence of ``(n_atoms_i, 3)`` arrays.
    energies : array_like, optional
        Potential energies in ``energy_unit``, shape ``(n_frames,)``.
    forces : array_like, optional
        Forces in ``energy_unit / length_unit``, shaped like ``positions``.
    cell : array_like, optional
        Lattice vectors as rows in ``length_unit``: ``(3, 3)`` for all frames or
        ``(n_frames, 3, 3)``.
    pbc : bool or array_like, optional
        Periodicity along each lattice vector, ``(3,)`` or ``(n_frames, 3)``.
        Defaults to True along all vectors when a cell is given, else False.
    charge : int or array_like, default 0
        Total charge per frame (elementary charges).
    spin : int or array_like, default 0
        Number of unpaired electrons per frame (2S).
    name : str
        A short name ("ethanol").
    level_of_theory : str
        How the labels were computed ("GFN2-xTB", "PBE/def2-SVP", "EMT", ...).
    energy_unit, length_unit : str
        Units of the arrays passed in. They are converted to eV and Å here, at the
        door, and never again: a Dataset always holds eV, Å and eV/Å.
    metadata : dict, optional
        Free-form provenance (temperature, time step, software versions, ...).

    Notes
    -----
    ``source_indices`` records, for a subset, which frames of its parent it holds,
    and ``source_fingerprint`` identifies that parent. Splits and models carry
    them so that a test frame is never trained on (see :mod:`mlffkit.data.splits`).
    """

    energy_unit = "eV"
    length_unit = "Ang"
    force_unit = "eV/Ang"

    def __init__(
        self,
        numbers,
        positions,
        energies=None,
        forces=None,
        *,
        cell=None,
        pbc=None,
        charge=0,
        spin=0,
        name: str = "",
        level_of_theory: str = "",
        energy_unit: str = "eV",
        length_unit: str = "Ang",
        metadata: dict | None = None,
        source_indices=None,
        source_fingerprint: str | None = None,
    ):
        e_fac = units.energy_factor(energy_unit)
        l_fac = units.length_factor(length_unit)

        numbers_list, pos_list = self._split_frames(numbers, positions)
        n_frames = len(pos_list)
        if n_frames == 0:
            raise ValueError("a Dataset needs at least one frame; positions is empty")
        self.n_atoms = np.array([len(p) for p in pos_list], dtype=np.int64)
        self._numbers = np.concatenate(numbers_list)
        self._positions = np.concatenate(pos_list).astype(np.float64) * l_fac
        _finite(self._positions, "positions")

        self._forces = None
        if forces is not None:
            f_list = self._frames_like(forces, "forces")
            self._forces = np.concatenate(f_list).astype(np.float64) * (e_fac / l_fac)
            _finite(self._forces, "forces")

        self.energies = None
        if energies is not None:
            e = np.asarray(energies, dtype=np.float64)
            if e.ndim == 2 and e.shape[1] == 1:  # sGDML writes (n_frames, 1)
                e = e[:, 0]
            if e.shape != (n_frames,):
                raise ValueError(
                    f"energies has shape {np.shape(energies)}; expected ({n_frames},), "
                    "one energy per frame"
                )
            _finite(e, "energies")
            self.energies = e * e_fac

        self.cell = None
        if cell is not None:
            c = np.asarray(cell, dtype=np.float64)
            if c.shape == (3, 3):
                c = np.broadcast_to(c, (n_frames, 3, 3)).copy()
            if c.shape != (n_frames, 3, 3):
                raise ValueError(
                    f"cell has shape {c.shape}; expected (3, 3) lattice vectors as rows, "
                    f"or ({n_frames}, 3, 3) one per frame"
                )
            _finite(c, "cell")
            self.cell = c * l_fac
            vol = np.abs(np.linalg.det(self.cell))
            if np.any(vol < 1e-8):
                raise ValueError(
                    f"cell of frame {int(np.argmax(vol < 1e-8))} has zero volume; "
                    "give three linearly independent lattice vectors"
                )

        if pbc is None:
            pbc = self.cell is not None
        p = np.asarray(pbc, dtype=bool)
        if p.ndim == 0:
            p = np.full(3, bool(p))
        if p.shape == (3,):
            p = np.broadcast_to(p, (n_frames, 3)).copy()
        if p.shape != (n_frames, 3):
            raise ValueError(f"pbc has shape {p.shape}; expected a bool, (3,) or ({n_frames}, 3)")
        if p.any() and self.cell is None:
            raise ValueError("pbc is set but no cell was given; pass cell=(3, 3) lattice vectors")
        self.pbc = p

        self.charge = self._per_frame_int(charge, "charge", n_frames)
        self.spin = self._per_frame_int(spin, "spin", n_frames)
        if np.any(self.spin < 0):
            raise ValueError("spin is the number of unpaired electrons and cannot be negative")

        self.name = str(name)
        self.level_of_theory = str(level_of_theory)
        self.metadata = dict(metadata or {})
        self.metadata.setdefault("source_units", {"energy": units.canonical_energy_unit(energy_unit),
                                                  "length": units.canonical_length_unit(length_unit)})
        self.source_indices = (
            np.arange(n_frames) if source_indices is None else np.asarray(source_indices, dtype=np.int64)
        )
        if self.source_indices.shape != (n_frames,):
            raise ValueError("source_indices needs one index per frame")
        self.source_fingerprint = source_fingerprint
        self._offsets = np.concatenate([[0], np.cumsum(self.n_atoms)])

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _split_frames(numbers, positions):
        """Turn the accepted input layouts into per-frame lists, validating shapes."""
        try:  # frames of one size stack into one array; ragged lists do not
            pos = np.asarray(positions, dtype=np.float64)
        except ValueError:
            pos = None
        if pos is not None and pos.dtype != object:
            if pos.ndim == 2 and pos.shape[1] == 3:
                pos = pos[None]
            if pos.ndim != 3 or pos.shape[2] != 3:
                raise ValueError(
                    f"positions has shape {pos.shape}; expected (n_frames, n_atoms, 3) "
                    "(or a list of (n_atoms_i, 3) arrays for frames of different sizes)"
                )
            pos_list = list(pos)
        else:
            pos_list = []
            for i, p in enumerate(positions):
                p = np.asarray(p, dtype=np.float64)
                if p.ndim != 2 or p.shape[1] != 3:
                    raise ValueError(f"positions of frame {i} has shape {p.shape}; expected (n_atoms, 3)")
                pos_list.append(p)
        n_frames = len(pos_list)

        if isinstance(numbers, list | tuple) and len(numbers) and np.ndim(numbers[0]) == 1:
            z_list = [as_atomic_numbers(z, f"numbers of frame {i}") for i, z in enumerate(numbers)]
        else:
            z = as_atomic_numbers(numbers)
            if z.ndim == 1:
                z_list = [z] * n_frames
            elif z.ndim == 2:
                z_list = list(z)
            else:
                raise ValueError(f"numbers has shape {z.shape}; expected (n_atoms,) or (n_frames, n_atoms)")
        if len(z_list) != n_frames:
            raise ValueError(f"numbers describes {len(z_list)} frames but positions has {n_frames}")
        for i, (z, p) in enumerate(zip(z_list, pos_list, strict=True)):
            if len(z) != len(p):
                raise ValueError(
                    f"frame {i}: numbers has {len(z)} atoms but positions has {len(p)}; "
                    "the atom counts must agree"
                )
        return z_list, pos_list

    def _frames_like(self, values, what: str):
        """Split a per-atom array (forces) into frames matching the positions."""
        if isinstance(values, np.ndarray) or not isinstance(values, Sequence):
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim == 2 and arr.shape[1] == 3 and len(self.n_atoms) == 1:
                arr = arr[None]
            if arr.ndim == 3:
                if arr.shape[0] != len(self.n_atoms) or np.any(self.n_atoms != arr.shape[1]) or arr.shape[2] != 3:
                    raise ValueError(
                        f"{what} has shape {arr.shape}; expected ({len(self.n_atoms)}, "
                        f"{self.n_atoms[0]}, 3) to match positions"
                    )
                return list(arr)
            raise ValueError(f"{what} has shape {arr.shape}; expected (n_frames, n_atoms, 3)")
        out = []
        if len(values) != len(self.n_atoms):
            raise ValueError(f"{what} has {len(values)} frames but positions has {len(self.n_atoms)}")
        for i, (v, n) in enumerate(zip(values, self.n_atoms, strict=True)):
            v = np.asarray(v, dtype=np.float64)
            if v.shape != (n, 3):
                raise ValueError(f"{what} of frame {i} has shape {v.shape}; expected ({n}, 3)")
            out.append(v)
        return out

    @staticmethod
    def _per_frame_int(value, what: str, n_frames: int) -> np.ndarray:
        arr = np.asarray(value)
        if arr.ndim == 0:
            arr = np.full(n_frames, arr)
        if arr.shape != (n_frames,):
            raise ValueError(f"{what} has shape {arr.shape}; expected a number or ({n_frames},)")
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise ValueError(f"{what} must be whole numbers")
        return arr.astype(np.int64)

    # ------------------------------------------------------------------ shape facts
    def __len__(self) -> int:
        return len(self.n_atoms)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.n_atoms)

    @property
    def is_uniform(self) -> bool:
        """True when every frame has the same atoms in the same order."""
        if np.any(self.n_atoms != self.n_atoms[0]):
            return False
        z = self._numbers.reshape(len(self), -1)
        return bool(np.all(z == z[0]))

    @property
    def is_periodic(self) -> bool:
        """True when any frame is periodic along any lattice vector."""
        return bool(self.pbc.any())

    @property
    def has_forces(self) -> bool:
        return self._forces is not None

    @property
    def has_energies(self) -> bool:
        return self.energies is not None

    def _require_uniform(self, what: str) -> None:
        if not self.is_uniform:
            raise ValueError(
                f"{what} as a (n_frames, n_atoms, 3) array needs frames with the same atoms; "
                "this dataset mixes structures: use frame(i), atoms(i) or the flat_* arrays"
            )

    @property
    def numbers(self) -> np.ndarray:
        """Atomic numbers ``(n_atoms,)`` of a uniform dataset."""
        self._require_uniform("numbers")
        return self._numbers[: self.n_atoms[0]]

    @property
    def positions(self) -> np.ndarray:
        """Positions in Å, ``(n_frames, n_atoms, 3)`` (uniform datasets; a view)."""
        self._require_uniform("positions")
        return self._positions.reshape(len(self), -1, 3)

    @property
    def forces(self) -> np.ndarray:
        """Forces in eV/Å, ``(n_frames, n_atoms, 3)`` (uniform datasets; a view).

        Raises
        ------
        ValueError
            If the dataset has no forces.
        """
        self.require("forces")
        self._require_uniform("forces")
        return self._forces.reshape(len(self), -1, 3)

    @property
    def flat_numbers(self) -> np.ndarray:
        """Atomic numbers of all atoms of all frames, ``(total_atoms,)``."""
        return self._numbers

    @property
    def flat_positions(self) -> np.ndarray:
        """Positions of all atoms of all frames in Å, ``(total_atoms, 3)``."""
        return self._positions

    @property
    def flat_forces(self) -> np.ndarray | None:
        """Forces of all atoms of all frames in eV/Å, ``(total_atoms, 3)``, or None."""
        return self._forces

    @property
    def frame_index(self) -> np.ndarray:
        """Frame of each atom in the flat arrays, ``(total_atoms,)``."""
        return np.repeat(np.arange(len(self)), self.n_atoms)

    def require(self, *what: str) -> Dataset:
        """Raise a clear error unless the dataset has ``"energies"`` / ``"forces"``.

        Returns the dataset itself so that calls can be chained.
        """
        for item in what:
            if item == "forces" and self._forces is None:
                raise ValueError(
                    f"dataset {self.name or '(unnamed)'} has no forces; this method learns from "
                    "forces: label the frames with a calculator (mlffkit.sampling.label) first"
                )
            if item == "energies" and self.energies is None:
                raise ValueError(
                    f"dataset {self.name or '(unnamed)'} has no energies; label the frames or "
                    "use a method that learns from forces alone"
                )
            if item not in ("forces", "energies"):
                raise ValueError(f"unknown requirement {item!r}; use 'energies' or 'forces'")
        return self

    @property
    def elements(self) -> list[str]:
        """Sorted element symbols present in the dataset."""
        return [chemical_symbols[z] for z in np.unique(self._numbers)]

    @property
    def formula(self) -> str:
        """Chemical formula of the first frame (Hill order)."""
        return self.atoms(0).get_chemical_formula(mode="hill")

    # ------------------------------------------------------------------ frames
    def frame(self, i: int) -> dict:
        """Frame ``i`` as a dict of arrays (numbers, positions, energy, forces, cell, pbc, ...)."""
        i = self._check_index(i)
        sl = slice(self._offsets[i], self._offsets[i + 1])
        return {
            "numbers": self._numbers[sl],
            "positions": self._positions[sl],
            "energy": None if self.energies is None else float(self.energies[i]),
            "forces": None if self._forces is None else self._forces[sl],
            "cell": None if self.cell is None else self.cell[i],
            "pbc": self.pbc[i],
            "charge": int(self.charge[i]),
            "spin": int(self.spin[i]),
        }

    def atoms(self, i: int) -> Atoms:
        """Frame ``i`` as :class:`ase.Atoms` with its labels on a SinglePointCalculator."""
        f = self.frame(i)
        at = Atoms(numbers=f["numbers"], positions=f["positions"], cell=f["cell"], pbc=f["pbc"])
        at.info["charge"] = f["charge"]
        at.info["spin"] = f["spin"]
        results = {}
        if f["energy"] is not None:
            results["energy"] = f["energy"]
        if f["forces"] is not None:
            results["forces"] = f["forces"].copy()
        if results:
            at.calc = SinglePointCalculator(at, **results)
        return at

    def to_atoms(self) -> list[Atoms]:
        """All frames as a list of :class:`ase.Atoms`."""
        return [self.atoms(i) for i in range(len(self))]

    def __iter__(self):
        return (self.atoms(i) for i in range(len(self)))

    def _check_index(self, i) -> int:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} is out of range for a dataset of {len(self)} frames")
        return i

    def __getitem__(self, key):
        """``ds[i]`` is an :class:`ase.Atoms`; ``ds[slice]`` or ``ds[index_array]`` a subset."""
        if isinstance(key, int | np.integer):
            return self.atoms(int(key))
        if isinstance(key, slice):
            return self.subset(np.arange(len(self))[key])
        return self.subset(key)

    def subset(self, indices) -> Dataset:
        """A new Dataset with the frames ``indices`` (a copy), remembering where they came from.

        ``source_indices`` of the result index the *original* dataset, so that a
        subset of a subset still points at the frames of the file it came from.
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"a boolean mask needs {len(self)} entries, got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for a dataset of {len(self)} frames")
        idx = np.where(idx < 0, idx + len(self), idx)
        atom_idx = np.concatenate(
            [np.arange(self._offsets[i], self._offsets[i + 1]) for i in idx]
        ) if idx.size else np.zeros(0, np.int64)
        if idx.size == 0:
            raise ValueError("the subset is empty; pass at least one frame index")
        n_at = self.n_atoms[idx]
        split = np.cumsum(n_at)[:-1]
        return Dataset(
            numbers=np.split(self._numbers[atom_idx], split),
            positions=np.split(self._positions[atom_idx], split),
            energies=None if self.energies is None else self.energies[idx],
            forces=None if self._forces is None else np.split(self._forces[atom_idx], split),
            cell=None if self.cell is None else self.cell[idx],
            pbc=self.pbc[idx],
            charge=self.charge[idx],
            spin=self.spin[idx],
            name=self.name,
            level_of_theory=self.level_of_theory,
            metadata=self.metadata,
            source_indices=self.source_indices[idx],
            source_fingerprint=self.source_fingerprint or self.fingerprint(),
        )

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """MD5 over atoms, positions and labels: identifies the dataset's content."""
        h = hashlib.md5()
        for arr in (self.n_atoms, self._numbers, self._positions, self.energies, self._forces, self.cell):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def frame_hashes(self, decimals: int = 6) -> np.ndarray:
        """One hash per frame of its atoms and positions rounded to ``decimals`` Å.

        Two datasets share a frame exactly when they share a hash, whatever file or
        order the frames came from; :func:`mlffkit.data.splits.check_disjoint` uses it.
        """
        out = np.empty(len(self), dtype=object)
        pos = np.round(self._positions, decimals) + 0.0  # + 0.0 folds -0.0 into 0.0
        for i in range(len(self)):
            sl = slice(self._offsets[i], self._offsets[i + 1])
            h = hashlib.md5(self._numbers[sl].tobytes())
            h.update(pos[sl].tobytes())
            out[i] = h.hexdigest()
        return out

    # ------------------------------------------------------------------ building
    @classmethod
    def from_atoms(cls, images, *, name: str = "", level_of_theory: str = "", require_forces: bool = False,
                   metadata: dict | None = None, energy_unit: str = "eV",
                   length_unit: str = "Ang") -> Dataset:
        """Build a dataset from :class:`ase.Atoms` whose calculators hold energy/forces.

        Energies and forces are taken from each image's calculator results (as ASE
        readers leave them); they must be present on all images or on none. A cell
        is kept when every image has one (also for molecules in a box, pbc False);
        periodic images must all have one.

        ``energy_unit`` and ``length_unit`` say what the images' numbers are in
        (ASE's eV and Å unless the file they came from used others).
        """
        images = list(images)
        if not images:
            raise ValueError("no structures given")
        energies, forces = [], []
        for at in images:
            res = getattr(at.calc, "results", {}) if at.calc is not None else {}
            energies.append(res.get("energy", res.get("free_energy")))
            forces.append(res.get("forces"))
        has_e = [e is not None for e in energies]
        has_f = [f is not None for f in forces]
        for label, flags in (("energy", has_e), ("forces", has_f)):
            if any(flags) and not all(flags):
                missing = flags.index(False)
                raise ValueError(
                    f"structure {missing} has no {label} while others do; label all structures or none"
                )
        if require_forces and not all(has_f):
            raise ValueError("the structures carry no forces; this use needs forces")
        periodic = [bool(at.pbc.any()) for at in images]
        has_cell = [at.cell.rank == 3 for at in images]
        if any(periodic) and not all(has_cell):
            missing = has_cell.index(False)
            raise ValueError(
                f"structure {missing} has no cell while others are periodic; give every "
                "periodic structure three lattice vectors"
            )
        cell = np.array([at.cell.array for at in images]) if all(has_cell) else None
        return cls(
            numbers=[at.numbers for at in images],
            positions=[at.positions for at in images],
            energies=energies if all(has_e) else None,
            forces=forces if all(has_f) else None,
            cell=cell,
            pbc=np.array([at.pbc for at in images]) if cell is not None else False,
            charge=[int(round(at.info.get("charge", 0))) for at in images],
            spin=[int(round(at.info.get("spin", 0))) for at in images],
            name=name,
            level_of_theory=level_of_theory,
            energy_unit=energy_unit,
            length_unit=length_unit,
            metadata=metadata,
        )

    @classmethod
    def concatenate(cls, datasets: Sequence[Dataset], name: str | None = None) -> Dataset:
        """Join datasets frame-wise. All must share the same level of theory.

        Raises
        ------
        ValueError
            If the levels of theory differ (their energies are not comparable).
        """
        datasets = list(datasets)
        if not datasets:
            raise ValueError("nothing to concatenate")
        theories = {d.level_of_theory for d in datasets}
        if len(theories) > 1:
            raise ValueError(
                f"cannot join datasets computed at different levels of theory {sorted(theories)}; "
                "their energies are not on one scale"
            )
        frames = [d.frame(i) for d in datasets for i in range(len(d))]
        any_cell = any(d.cell is not None for d in datasets)
        if any_cell and not all(d.cell is not None for d in datasets):
            raise ValueError("cannot join periodic and non-periodic datasets")
        all_e = all(d.energies is not None for d in datasets)
        all_f = all(d.has_forces for d in datasets)
        return cls(
            numbers=[f["numbers"] for f in frames],
            positions=[f["positions"] for f in frames],
            energies=[f["energy"] for f in frames] if all_e else None,
            forces=[f["forces"] for f in frames] if all_f else None,
            cell=np.array([f["cell"] for f in frames]) if any_cell else None,
            pbc=np.array([f["pbc"] for f in frames]),
            charge=[f["charge"] for f in frames],
            spin=[f["spin"] for f in frames],
            name=name if name is not None else datasets[0].name,
            level_of_theory=datasets[0].level_of_theory,
            metadata=datasets[0].metadata,
        )

    # ------------------------------------------------------------------ reporting
    def describe(self) -> dict:
        """Summary statistics: sizes, elements, energy and force statistics (eV, eV/Å)."""
        out = {
            "name": self.name,
            "level_of_theory": self.level_of_theory,
            "n_frames": len(self),
            "n_atoms": int(self.n_atoms[0]) if np.all(self.n_atoms == self.n_atoms[0]) else
            f"{int(self.n_atoms.min())}-{int(self.n_atoms.max())}",
            "elements": self.elements,
            "periodic": self.is_periodic,
            "has_energies": self.energies is not None,
            "has_forces": self.has_forces,
        }
        if self.energies is not None:
            e = self.energies
            out.update(energy_mean_eV=float(e.mean()), energy_std_eV=float(e.std()),
                       energy_min_eV=float(e.min()), energy_max_eV=float(e.max()))
        if self.has_forces:
            f = np.linalg.norm(self._forces, axis=1)
            out.update(force_norm_mean_eV_A=float(f.mean()), force_norm_max_eV_A=float(f.max()),
                       force_component_std_eV_A=float(self._forces.std()))
        return out

    def summary(self) -> str:
        """A human-readable multi-line summary (energies in eV and kcal/mol)."""
        d = self.describe()
        lines = [
            f"Dataset {d['name'] or '(unnamed)'}: {d['n_frames']} frames of {d['n_atoms']} atoms "
            f"({', '.join(d['elements'])}), {'periodic' if d['periodic'] else 'molecular'}",
            f"  level of theory: {d['level_of_theory'] or 'unknown'}",
        ]
        if d["has_energies"]:
            span = d["energy_max_eV"] - d["energy_min_eV"]
            lines.append(
                f"  energy: mean {d['energy_mean_eV']:.4f} eV, std {d['energy_std_eV'] * 1e3:.1f} meV "
                f"({d['energy_std_eV'] / units.KCAL_PER_MOL:.2f} kcal/mol), range {span:.3f} eV"
            )
        if d["has_forces"]:
            lines.append(
                f"  forces: mean |F| {d['force_norm_mean_eV_A']:.3f} eV/Å, max |F| "
                f"{d['force_norm_max_eV_A']:.3f} eV/Å, component std {d['force_component_std_eV_A']:.3f} eV/Å"
            )
        else:
            lines.append("  forces: none")
        return "\n".join(lines)

    def __repr__(self) -> str:
        n = self.n_atoms
        atoms = str(int(n[0])) if np.all(n == n[0]) else f"{int(n.min())}-{int(n.max())}"
        return (
            f"Dataset(name={self.name!r}, n_frames={len(self)}, n_atoms={atoms}, "
            f"level_of_theory={self.level_of_theory!r}, energies={self.energies is not None}, "
            f"forces={self.has_forces}, periodic={self.is_periodic}, units=eV/Å)"
        )

    def save(self, path, format: str | None = None, overwrite: bool = False):
        """Write the dataset and return the path; see :func:`mlffkit.data.formats.save` (npz or extxyz)."""
        from mlffkit.data.formats import save

        return save(self, path, format=format, overwrite=overwrite)
