"""Reading and writing datasets: sGDML/MD17/MD22 npz, rMD17 npz, extxyz and all ASE formats.

:func:`load` turns a dataset name or a file into a :class:`~mlffkit.data.Dataset`
(always eV, Å, eV/Å); :func:`save` writes one so that it reads back exactly.

Formats read
------------
sGDML npz (MD17, MD22, files written by sgdml)
    ``R`` (n_frames, n_atoms, 3), ``z`` (n_atoms,), ``F`` like ``R``, ``E``
    (n_frames,) or (n_frames, 1), optional ``lattice`` (3, 3) with the lattice
    vectors as *columns* (sgdml's convention, the transpose of ASE's cell),
    ``name``, ``theory``, ``r_unit``, ``e_unit``. The units are whatever
    ``e_unit``/``r_unit`` say; a file without them needs ``energy_unit=`` and
    ``length_unit=`` (mlffkit never guesses units).
rMD17 npz
    ``nuclear_charges``, ``coords``, ``energies``, ``forces`` in kcal/mol and Å
    (fixed by the format), plus ``old_energies``/``old_forces``, the original
    MD17 labels of the same geometries (``labels="old"``).
Everything ASE reads
    extxyz, xyz, ASE db, traj, ... through :func:`ase.io.read`, in ASE's units
    (eV, Å) unless the file records others (files written by :func:`save` do).

Formats written
---------------
``.npz``
    The sGDML layout, which sgdml 1.0.3 trains on directly (``type='d'``,
    ``name``, ``theory``, ``z``, ``R``, ``E``, ``F``, ``r_unit='Ang'``,
    ``e_unit='eV'``, ``md5`` as :func:`sgdml.utils.io.dataset_md5` computes it,
    ``lattice`` for a periodic set with one cell), plus mlffkit's extras:
    ``mlffkit`` (a JSON header: name, level of theory, metadata, provenance),
    ``charge``, ``spin``, ``pbc``, ``source_indices``. Datasets sGDML cannot
    describe (frames with different atoms, no forces, a cell that changes or
    partial periodicity) are written in mlffkit's *flat* npz layout instead:
    ``n_atoms`` per frame and the atoms of all frames stacked, which only
    :func:`load` reads. ``format="sgdml"`` insists on the sGDML layout.
``.extxyz`` / ``.xyz``
    Extended XYZ that ASE and other extxyz readers read (energy in the comment
    line, forces as a column), written with full float64 precision (ASE's own
    writer rounds to 8 decimals) and with mlffkit's header on the first frame.

Both round trips are exact: every float64 reads back bit for bit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from ase.io.extxyz import key_val_dict_to_str

from mlffkit import units
from mlffkit.data import registry
from mlffkit.data.dataset import Dataset
from mlffkit.fileio import atomic_path

#: Key of mlffkit's JSON header in npz files and in the first extxyz frame.
HEADER_KEY = "mlffkit"
FORMAT_VERSION = 1
_NPZ_FORMATS = ("npz", "sgdml", "rmd17", "mlffkit")
_XYZ_SUFFIXES = (".xyz", ".extxyz")
_PLURAL = {"energy": "energies", "length": "lengths"}
_RMD17_LEVELS = {"revised": "PBE/def2-SVP", "old": "PBE+vdW-TS (original MD17 labels)"}


# ---------------------------------------------------------------------------- load
def load(
    name_or_path,
    *,
    energy_unit: str | None = None,
    length_unit: str | None = None,
    format: str | None = None,
    index=":",
    name: str | None = None,
    level_of_theory: str | None = None,
    labels: str | None = None,
) -> Dataset:
    """Load a dataset by name or from a file, converting to eV and Å.

    Parameters
    ----------
    name_or_path : str or path-like
        A file, or a dataset name from :func:`mlffkit.data.available`: a bundled
        one (``"ethanol"``, ``"aspirin"``, ``"cu_vacancy"``) or a public benchmark
        (``"md17_ethanol"``, ``"rmd17_aspirin"``, ``"md22_ac_ala3_nhme"``), which
        is downloaded into the cache on first use.
    energy_unit, length_unit : str, optional
        Units of a file that does not record them (an sGDML-style npz without
        ``e_unit``/``r_unit``, or an ASE file whose numbers are not in eV and Å).
        If the file records its units, they are used and a contradicting
        argument is an error.
    format : str, optional
        ``"sgdml"``, ``"rmd17"``, ``"mlffkit"`` or ``"npz"`` (detected from the
        keys) for npz files, otherwise an ASE format name (``"extxyz"``,
        ``"db"``, ``"traj"``, ...). Default: from the file.
    index : int, slice, str or sequence of int
        Frames to keep, ASE style: ``":"`` (all), ``"::10"``, ``"0:1000"``, ``5``,
        ``[0, 7, 9]``. The result remembers which frames of the file it holds
        (``source_indices``) and the file's fingerprint (``source_fingerprint``).
    name, level_of_theory : str, optional
        Override what the file says.
    labels : {"revised", "old"}, optional
        rMD17 only: the revised PBE/def2-SVP labels (default) or the original
        MD17 labels of the same geometries (``old_energies``/``old_forces``).

    Returns
    -------
    Dataset
        Energies in eV, positions in Å, forces in eV/Å.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist (and is no dataset name), or a bundled
        dataset whose file is missing.
    ValueError
        For missing or contradicting units, unknown layouts and bad arrays.

    Examples
    --------
    >>> ds = mlffkit.data.load("md17_ethanol", index="::100")  # doctest: +SKIP
    >>> ds = mlffkit.data.load("my_data.npz", energy_unit="kcal/mol", length_unit="Ang")  # doctest: +SKIP
    """
    path, entry = _resolve(name_or_path)
    defaults = {}
    if entry is not None and entry.kind == "remote":
        # What the publisher documents: used where the file itself records nothing.
        defaults = {
            "name": entry.name,
            "level_of_theory": entry.level_of_theory,
            "energy_unit": entry.energy_unit,
            "length_unit": entry.length_unit,
        }
        format = format or entry.file_format
    fmt = format.lower() if format else None
    opts = dict(
        energy_unit=energy_unit,
        length_unit=length_unit,
        name=name,
        level_of_theory=level_of_theory,
        defaults=defaults,
    )
    if fmt in _NPZ_FORMATS or (fmt is None and path.suffix.lower() == ".npz"):
        ds = _read_npz(path, fmt or "npz", labels=labels, **opts)
    else:
        if labels is not None:
            raise ValueError("labels= applies to rMD17 npz files only; leave it out for this file")
        ds = _read_ase(path, fmt, **opts)
    selection = _frame_selection(index, len(ds))
    return ds if selection is None else ds.subset(selection)


def _resolve(name_or_path):
    """A file path, or a registry name resolved to its bundled or cached file."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path, None
    if isinstance(name_or_path, str) and registry.is_known(name_or_path):
        entry = registry.get(name_or_path)
        if entry.kind == "bundled":
            path = registry.bundled_path(entry)
            if not path.is_file():
                raise FileNotFoundError(
                    f"the bundled dataset {entry.name!r} should be at {path} but that file is "
                    "missing; reinstall mlffkit, or set MLFFKIT_DATA to a folder holding "
                    f"{entry.filename}"
                )
            return path, entry
        from mlffkit.data.download import fetch

        return fetch(entry.name), entry
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a dataset file inside it")
    raise FileNotFoundError(
        f"{str(name_or_path)!r} is neither an existing file nor a known dataset name; check the "
        "path, or see mlffkit.data.available() (CLI: mlffkit data list) for dataset names"
    )


def _frame_selection(index, n_frames: int):
    """Frame indices selected by an ASE-style ``index``, or None for all frames."""
    if index is None or (isinstance(index, str) and index.strip() == ":"):
        return None
    if isinstance(index, str):
        text = index.strip()
        try:
            if ":" in text:
                parts = [int(p) if p.strip() else None for p in text.split(":")]
                if len(parts) > 3:
                    raise ValueError
                index = slice(*parts)
            else:
                index = int(text)
        except ValueError:
            raise ValueError(
                f"index {index!r} is not understood; use ':' (all), '::10', '0:1000', 5 "
                "or a list of frame numbers"
            ) from None
    if isinstance(index, int | np.integer):
        if not -n_frames <= index < n_frames:
            raise IndexError(f"frame {index} is out of range for a file of {n_frames} frames")
        return np.array([index % n_frames])
    if isinstance(index, slice):
        return np.arange(n_frames)[index]
    return np.asarray(index)


def _unit(kind: str, recorded, passed, where: str, *, fixed: bool = True) -> str:
    """Decide the unit of ``kind`` ("energy"/"length") from the file and the caller.

    ``recorded`` is what the file (or its format, or its publisher) says; with
    ``fixed`` it wins and a contradicting ``passed`` is an error, otherwise (ASE's
    eV/Å convention for files that record nothing) ``passed`` overrides it.
    """
    factor = units.energy_factor if kind == "energy" else units.length_factor
    arg = f"{kind}_unit"
    if recorded is not None and fixed:
        try:
            rec_factor = factor(recorded)
        except ValueError:
            if passed is not None:  # the caller tells us what the file's spelling means
                return passed
            raise ValueError(
                f"{where} records its {kind} unit as {recorded!r}, which mlffkit does not know; "
                f"pass {arg}=... to say which unit that is"
            ) from None
        if passed is not None and factor(passed) != rec_factor:
            raise ValueError(
                f"{where} says its {_PLURAL[kind]} are in {recorded}, but {arg}={passed!r} was "
                f"passed; leave {arg} out (the file's unit is used) or fix the file"
            )
        return recorded
    if passed is not None:
        factor(passed)  # an unknown name is an error here, not later
        return passed
    if recorded is not None:
        return recorded
    example = "'kcal/mol'" if kind == "energy" else "'Ang'"
    raise ValueError(
        f"{where} does not record its {kind} unit; pass {arg}=... (e.g. {arg}={example} "
        "for MD17/MD22-style files). mlffkit never guesses units."
    )


def _text(value) -> str:
    """A string stored in an npz (0-d str or bytes array)."""
    value = np.asarray(value).item() if isinstance(value, np.ndarray) else value
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------- npz
def _npz_arrays_of(path: Path) -> dict:
    """All arrays of an npz file, refusing pickled objects."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise ValueError(
                f"{path} stores Python objects (pickles); mlffkit does not unpickle files because "
                "that can run arbitrary code. Re-save its arrays with plain dtypes."
            ) from None
        raise ValueError(f"{path} is not a readable npz file: {err}") from None


def _read_npz(
    path: Path, fmt: str, *, labels, energy_unit, length_unit, name, level_of_theory, defaults
) -> Dataset:
    data = _npz_arrays_of(path)
    keys = set(data)
    if fmt == "npz":
        if {"nuclear_charges", "coords"} <= keys:
            fmt = "rmd17"
        elif HEADER_KEY in keys and json.loads(_text(data[HEADER_KEY])).get("layout") == "flat":
            fmt = "mlffkit"
        elif {"R", "z"} <= keys:
            fmt = "sgdml"
        else:
            raise ValueError(
                f"{path.name} has arrays {sorted(keys)}; mlffkit reads sGDML npz (R, z, E, F), "
                "rMD17 npz (nuclear_charges, coords, energies, forces) and its own npz files"
            )
    if labels is not None and fmt != "rmd17":
        raise ValueError("labels= applies to rMD17 npz files only; leave it out for this file")
    opts = dict(
        energy_unit=energy_unit,
        length_unit=length_unit,
        name=name,
        level_of_theory=level_of_theory,
        defaults=defaults,
    )
    if fmt == "rmd17":
        return _from_rmd17(path, data, labels=labels, **opts)
    if fmt in ("sgdml", "mlffkit"):
        return _from_mlffkit_or_sgdml(path, data, **opts)
    raise ValueError(f"unknown npz format {fmt!r}; use one of {', '.join(_NPZ_FORMATS)}")


def _require_keys(path: Path, data: dict, needed, layout: str) -> None:
    missing = [k for k in needed if k not in data]
    if missing:
        raise ValueError(
            f"{path.name} lacks {', '.join(missing)}, which the {layout} layout needs "
            f"(it has {', '.join(sorted(data))})"
        )


def _from_rmd17(
    path, data, *, labels, energy_unit, length_unit, name, level_of_theory, defaults
) -> Dataset:
    labels = labels or "revised"
    if labels not in _RMD17_LEVELS:
        raise ValueError(f"labels must be 'revised' or 'old', got {labels!r}")
    prefix = "old_" if labels == "old" else ""
    e_key, f_key = prefix + "energies", prefix + "forces"
    _require_keys(path, data, ["nuclear_charges", "coords", e_key, f_key], "rMD17")
    where = f"{path.name} (rMD17 format)"
    return Dataset(
        numbers=data["nuclear_charges"],
        positions=data["coords"],
        energies=data[e_key],
        forces=data[f_key],
        # rMD17 is kcal/mol and Å by definition of the format
        energy_unit=_unit("energy", "kcal/mol", energy_unit, where),
        length_unit=_unit("length", "Ang", length_unit, where),
        name=(defaults.get("name") or path.stem) if name is None else name,
        level_of_theory=_RMD17_LEVELS[labels] if level_of_theory is None else level_of_theory,
        metadata={"source_file": path.name, "source_format": "rMD17 npz", "labels": labels},
    )


def _from_mlffkit_or_sgdml(
    path, data, *, energy_unit, length_unit, name, level_of_theory, defaults
) -> Dataset:
    header = json.loads(_text(data[HEADER_KEY])) if HEADER_KEY in data else None
    flat = header is not None and header.get("layout") == "flat"
    units_of = {}
    for kind, key, passed in (("energy", "e_unit", energy_unit), ("length", "r_unit", length_unit)):
        if key in data:
            recorded, where = _text(data[key]), f"{path.name} ({key})"
        else:  # a named benchmark: the units its publisher documents
            recorded, where = defaults.get(f"{kind}_unit"), f"{path.name} (as published)"
        units_of[kind] = _unit(kind, recorded, passed, where)
    if flat:
        _require_keys(path, data, ["n_atoms", "numbers", "positions"], "mlffkit flat")
        split = np.cumsum(data["n_atoms"])[:-1]
        numbers = np.split(data["numbers"], split)
        positions = np.split(data["positions"], split)
        forces = np.split(data["forces"], split) if "forces" in data else None
        energies = data.get("energies")
        cell = data.get("cell")
        pbc = data.get("pbc")
    else:
        _require_keys(path, data, ["R", "z"], "sGDML")
        numbers, positions = data["z"], data["R"]
        energies, forces = data.get("E"), data.get("F")
        cell, pbc = data.get("cell"), data.get("pbc")
        if "lattice" in data:  # sgdml: lattice vectors as columns
            cell = np.asarray(data["lattice"], dtype=np.float64).T
            pbc = True if pbc is None else pbc
    if header is not None:  # written by mlffkit: its header is exact
        file_name, file_theory = header.get("name", ""), header.get("level_of_theory", "")
        metadata = header.get("metadata", {})
        source_fingerprint = header.get("source_fingerprint")
    else:
        theory = _text(data["theory"]) if "theory" in data else ""
        # a named benchmark's curated name and level of theory come before the file's own
        file_name = defaults.get("name") or (_text(data["name"]) if "name" in data else path.stem)
        file_theory = defaults.get("level_of_theory") or ("" if theory == "unknown" else theory)
        metadata = {"source_file": path.name, "source_format": "sGDML npz"}
        source_fingerprint = None
    return Dataset(
        numbers=numbers,
        positions=positions,
        energies=energies,
        forces=forces,
        cell=cell,
        pbc=pbc,
        charge=data.get("charge", 0),
        spin=data.get("spin", 0),
        name=file_name if name is None else name,
        level_of_theory=file_theory if level_of_theory is None else level_of_theory,
        energy_unit=units_of["energy"],
        length_unit=units_of["length"],
        metadata=metadata,
        source_indices=data.get("source_indices"),
        source_fingerprint=source_fingerprint,
    )


# ---------------------------------------------------------------------------- ASE
def _read_ase(
    path: Path, fmt, *, energy_unit, length_unit, name, level_of_theory, defaults
) -> Dataset:
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    try:
        images = ase.io.read(path, index=":", format=fmt)
    except UnknownFileTypeError as err:
        raise ValueError(
            f"cannot tell the format of {path.name} ({err}); pass format=... (an ASE format "
            "such as 'extxyz', 'db', 'traj', or 'sgdml'/'rmd17' for npz files)"
        ) from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise ValueError(f"{path.name} holds no structures")
    header = _decode_header(images[0].info.get(HEADER_KEY))
    where = path.name
    if header is not None:
        e_unit = _unit("energy", header.get("energy_unit"), energy_unit, where)
        r_unit = _unit("length", header.get("length_unit"), length_unit, where)
    else:  # ASE's convention is eV and Å; a caller may say the numbers are in other units
        e_unit = _unit("energy", "eV", energy_unit, where, fixed=False)
        r_unit = _unit("length", "Ang", length_unit, where, fixed=False)
    if header is not None:  # written by mlffkit: exact
        file_name, file_theory = header.get("name", ""), header.get("level_of_theory", "")
        metadata = header.get("metadata", {})
    else:
        file_name, file_theory = path.stem, defaults.get("level_of_theory", "")
        metadata = {"source_file": path.name, "source_format": "ASE"}
    ds = Dataset.from_atoms(
        images,
        name=file_name if name is None else name,
        level_of_theory=file_theory if level_of_theory is None else level_of_theory,
        metadata=metadata,
        energy_unit=e_unit,
        length_unit=r_unit,
    )
    if header is not None and all("source_index" in at.info for at in images):
        ds.source_indices = np.array(
            [int(at.info["source_index"]) for at in images], dtype=np.int64
        )
        ds.source_fingerprint = header.get("source_fingerprint")
    return ds


# ---------------------------------------------------------------------------- save
def save(dataset: Dataset, path, format: str | None = None, overwrite: bool = False) -> Path:
    """Write a dataset so that :func:`load` reads it back exactly.

    Parameters
    ----------
    dataset : Dataset
    path : path-like
        ``.npz`` (sGDML layout that sgdml trains on, or mlffkit's flat layout for
        datasets sGDML cannot describe) or ``.extxyz``/``.xyz``.
    format : {"npz", "sgdml", "extxyz"}, optional
        Default: from the suffix. ``"sgdml"`` refuses to fall back to the flat
        layout and says why the dataset does not fit sGDML.
    overwrite : bool
        Replace an existing file. The file is written atomically either way.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        For an unknown suffix or format, or metadata that cannot be stored.

    Notes
    -----
    ``metadata`` is stored as JSON: numbers, strings, lists and dicts read back
    as they were; numpy arrays and scalars read back as lists and Python numbers.
    """
    if not isinstance(dataset, Dataset):
        raise ValueError(f"save needs a mlffkit Dataset, got {type(dataset).__name__}")
    path = Path(path).expanduser()
    fmt = (format or "").lower() or _format_from_suffix(path)
    if fmt in ("npz", "sgdml"):
        arrays = _npz_arrays(dataset, strict_sgdml=fmt == "sgdml")
        with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    elif fmt in ("extxyz", "xyz"):
        with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for frame_text in _extxyz_frames(dataset):
                fh.write(frame_text)
    else:
        raise ValueError(f"cannot save as {fmt!r}; use format 'npz', 'sgdml' or 'extxyz'")
    return path


def convert(
    src, dst, *, format: str | None = None, overwrite: bool = False, **load_options
) -> Dataset:
    """Load ``src`` (a file or dataset name) and save it as ``dst``; returns the dataset.

    ``load_options`` go to :func:`load` (``energy_unit``, ``length_unit``,
    ``index``, ``labels``, ...); ``format`` and ``overwrite`` to :func:`save`.

    Examples
    --------
    >>> convert("old.npz", "new.extxyz", energy_unit="kcal/mol", length_unit="Ang")  # doctest: +SKIP
    """
    ds = load(src, **load_options)
    save(ds, dst, format=format, overwrite=overwrite)
    return ds


def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in _XYZ_SUFFIXES:
        return "extxyz"
    raise ValueError(
        f"cannot tell the format from the suffix of {path.name!r}; use .npz (sGDML-compatible) "
        "or .extxyz, or pass format='npz'/'extxyz'"
    )


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def _header(ds: Dataset, layout: str) -> dict:
    header = {
        "format": "mlffkit",
        "version": FORMAT_VERSION,
        "layout": layout,
        "name": ds.name,
        "level_of_theory": ds.level_of_theory,
        "energy_unit": "eV",
        "length_unit": "Ang",
        "source_fingerprint": ds.source_fingerprint,
        "metadata": ds.metadata,
    }
    try:
        json.dumps(header, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"the dataset's metadata cannot be saved ({err}); keep metadata to numbers, strings, "
            "lists, dicts and numpy arrays"
        ) from None
    return header


def _sgdml_problem(ds: Dataset) -> str | None:
    """Why sGDML's npz layout cannot describe ``ds``, or None if it can."""
    if not ds.is_uniform:
        return "its frames do not all have the same atoms in the same order"
    if not ds.has_forces:
        return "it has no forces, which sGDML datasets always carry"
    if ds.cell is not None:
        if ds.pbc.all():
            if not np.all(ds.cell == ds.cell[0]):
                return "its cell changes from frame to frame (sGDML stores one lattice)"
        elif ds.pbc.any():
            return "it is periodic along some lattice vectors only"
    return None


def _sgdml_md5(arrays: dict) -> bytes:
    """The dataset fingerprint exactly as ``sgdml.utils.io.dataset_md5`` computes it."""
    h = hashlib.md5()
    for key in ("z", "R", "E", "F"):
        if key in arrays:
            h.update(hashlib.md5(np.ascontiguousarray(arrays[key]).ravel()).digest())
    return h.hexdigest().encode("utf-8")


def _npz_arrays(ds: Dataset, *, strict_sgdml: bool) -> dict:
    problem = _sgdml_problem(ds)
    if problem and strict_sgdml:
        raise ValueError(
            f"dataset {ds.name or '(unnamed)'} cannot be written as an sGDML dataset: {problem}. "
            "Save it without format='sgdml' (mlffkit's flat npz layout) or as .extxyz."
        )
    layout = "flat" if problem else "sgdml"
    header = json.dumps(_header(ds, layout), default=_json_default)
    common = {
        HEADER_KEY: np.array(header),
        "r_unit": np.array("Ang"),
        "e_unit": np.array("eV"),
        "pbc": ds.pbc,
        "charge": ds.charge,
        "spin": ds.spin,
        "source_indices": ds.source_indices,
    }
    if layout == "flat":
        arrays = {"n_atoms": ds.n_atoms, "numbers": ds.flat_numbers, "positions": ds.flat_positions}
        if ds.has_forces:
            arrays["forces"] = ds.flat_forces
        if ds.energies is not None:
            arrays["energies"] = ds.energies
        if ds.cell is not None:
            arrays["cell"] = ds.cell
        return {**arrays, **common}

    forces = np.ascontiguousarray(ds.forces)
    arrays = {
        "type": np.array("d"),
        "name": np.array(ds.name or "unnamed"),
        "theory": np.array(ds.level_of_theory or "unknown"),
        "z": np.ascontiguousarray(ds.numbers, dtype=np.int64),
        "R": np.ascontiguousarray(ds.positions),
        "F": forces,
        "F_min": forces.min(),
        "F_max": forces.max(),
        "F_mean": forces.mean(),
        "F_var": forces.var(),
    }
    if ds.energies is not None:
        e = np.ascontiguousarray(ds.energies)
        arrays.update(E=e, E_min=e.min(), E_max=e.max(), E_mean=e.mean(), E_var=e.var())
    if ds.cell is not None and ds.pbc.all():
        arrays["lattice"] = np.ascontiguousarray(ds.cell[0].T)  # sgdml: vectors as columns
    elif ds.cell is not None:
        arrays["cell"] = ds.cell  # a molecule in a box: no lattice, or sgdml would wrap it
    arrays["md5"] = np.array(_sgdml_md5(arrays))
    return {**arrays, **common}


# ---------------------------------------------------------------------------- extxyz
def _encode_header(header: dict) -> str:
    """The header as ``_JSON {...}`` (ASE reads it back as a dict) when that survives
    ASE's extxyz quoting, else base64 (strings with quotes, backslashes or non-ASCII)."""
    text = json.dumps(header, default=_json_default)
    if "\\" not in text:
        return "_JSON " + text
    return "base64:" + base64.b64encode(text.encode("utf-8")).decode("ascii")


def _decode_header(value) -> dict | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("base64:"):
        try:
            return json.loads(base64.b64decode(value[len("base64:") :]).decode("utf-8"))
        except (binascii.Error, ValueError):
            raise ValueError(f"the {HEADER_KEY} header of this extxyz file is damaged") from None
    return None


def _extxyz_frames(ds: Dataset):
    """Yield the text of each frame; floats are written with repr (exact float64)."""
    header = _encode_header(_header(ds, "extxyz"))
    properties = "species:S:1:pos:R:3" + (":forces:R:3" if ds.has_forces else "")
    for i in range(len(ds)):
        f = ds.frame(i)
        info = {}
        if f["energy"] is not None:
            info["energy"] = float(f["energy"])
        info.update(charge=f["charge"], spin=f["spin"], source_index=int(ds.source_indices[i]))
        parts = []
        if f["cell"] is not None:  # extxyz Lattice: the rows of ASE's cell, in order
            parts.append('Lattice="' + " ".join(repr(x) for x in f["cell"].ravel().tolist()) + '"')
        parts.append(f"Properties={properties}")
        parts.append(key_val_dict_to_str(info))
        if i == 0:  # quoted by hand: ASE leaves base64's "=" padding unquoted and misreads it
            parts.append(f'{HEADER_KEY}="' + header.replace('"', '\\"') + '"')
        parts.append('pbc="' + " ".join("T" if p else "F" for p in f["pbc"]) + '"')
        columns = (
            f["positions"] if f["forces"] is None else np.hstack([f["positions"], f["forces"]])
        )
        rows = [
            f"{chemical_symbols[z]:<2s} " + " ".join(repr(x) for x in row)
            for z, row in zip(f["numbers"].tolist(), columns.tolist(), strict=True)
        ]
        yield f"{len(rows)}\n{' '.join(parts)}\n" + "\n".join(rows) + "\n"
