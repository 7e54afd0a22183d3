"""The datasets mlffkit knows by name: the bundled teaching sets and public benchmarks.

Bundled datasets ship in the ``data/`` folder (:func:`mlffkit.config.bundled_data_dir`).
Remote datasets are downloaded once from their official public source into the
cache (:func:`mlffkit.config.cache_dir`) by :func:`mlffkit.data.download.fetch`.

Checksums
---------
The sGDML site publishes no checksums for the MD17 and MD22 files. For those
``sha256`` is None: the downloader trusts the first download and records its
SHA-256 beside the cached file, so that a later change or corruption of the file
is detected (trust on first use). For the rMD17 archive a truncated SHA-256 is
published (the 12-hex-digit prefix the load-atoms package checks); downloads are
verified against it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlffkit import config

#: Where the sGDML group serves MD17 (the ``sgdml-get`` client downloads from here).
SGDML_NPZ_URL = "http://www.quantum-machine.org/gdml/data/npz/"
#: Where the sGDML group serves MD22.
SGDML_REPO_URL = "http://www.quantum-machine.org/gdml/repo/datasets/"
#: The revised MD17 archive on figshare (doi:10.6084/m9.figshare.12672038.v3).
RMD17_URL = "https://figshare.com/ndownloader/files/23950376"

MD17_CITATION = (
    "S. Chmiela, A. Tkatchenko, H. E. Sauceda, I. Poltavsky, K. T. Schütt, K.-R. Müller, "
    "Machine learning of accurate energy-conserving molecular force fields, "
    "Sci. Adv. 3, e1603015 (2017), doi:10.1126/sciadv.1603015"
)
RMD17_CITATION = (
    "A. S. Christensen, O. A. von Lilienfeld, On the role of gradients for machine learning "
    "of molecular energies and forces, Mach. Learn.: Sci. Technol. 1, 045018 (2020), "
    "doi:10.1088/2632-2153/abba6f"
)
MD22_CITATION = (
    "S. Chmiela, V. Vassilev-Galindo, O. T. Unke, A. Kabylda, H. E. Sauceda, A. Tkatchenko, "
    "K.-R. Müller, Accurate global machine learning force fields for molecules with hundreds "
    "of atoms, Sci. Adv. 9, eadf0873 (2023), doi:10.1126/sciadv.adf0873"
)
GFN2_CITATION = (
    "C. Bannwarth, S. Ehlert, S. Grimme, GFN2-xTB, J. Chem. Theory Comput. 15, 1652 (2019), "
    "doi:10.1021/acs.jctc.8b01176 (labels computed with tblite)"
)
EMT_CITATION = (
    "K. W. Jacobsen, P. Stoltze, J. K. Nørskov, A semi-empirical effective medium theory for "
    "metals and alloys, Surf. Sci. 366, 394 (1996) (ASE's EMT calculator)"
)


@dataclass(frozen=True)
class DatasetEntry:
    """One named dataset.

    Attributes
    ----------
    name : str
        The canonical name (``"md17_ethanol"``).
    kind : str
        ``"bundled"`` (ships with mlffkit) or ``"remote"`` (downloaded on first use).
    description : str
        One line for :func:`available`.
    filename : str
        Bundled: the file in the bundled data folder. Remote: where the file lives
        inside the cache folder (``"md17/md17_ethanol.npz"``).
    file_format : str
        How :func:`mlffkit.data.load` reads it: ``"npz"`` (sGDML layout or mlffkit's
        own) or ``"rmd17"``.
    level_of_theory, energy_unit, length_unit : str
        Labels and units of the file as published.
    citation : str
        What to cite when using it.
    url : str, optional
        Official download address (remote datasets).
    sha256 : str, optional
        Published SHA-256 of the downloaded file, or a published prefix of it (at
        least 12 hex digits); None when none is published (trust on first use).
    archive, member : str, optional
        For files published inside an archive: where the archive goes in the cache
        and the file's path inside it.
    n_frames, n_atoms : int, optional
        Size as published, where known.
    aliases : tuple of str
        Other names accepted by :func:`get`.
    """

    name: str
    kind: str
    description: str
    filename: str
    level_of_theory: str
    energy_unit: str
    length_unit: str
    citation: str
    file_format: str = "npz"
    url: str | None = None
    sha256: str | None = None
    archive: str | None = None
    member: str | None = None
    n_frames: int | None = None
    n_atoms: int | None = None
    homepage: str = ""
    license: str = ""
    aliases: tuple[str, ...] = field(default=())


def _bundled() -> list[DatasetEntry]:
    common = dict(kind="bundled", energy_unit="eV", length_unit="Ang")
    return [
        DatasetEntry(
            name="ethanol",
            description="ethanol, MD frames labelled with GFN2-xTB (bundled teaching set)",
            filename="ethanol_gfn2.npz",
            level_of_theory="GFN2-xTB",
            citation=GFN2_CITATION,
            n_atoms=9,
            aliases=("ethanol_gfn2",),
            **common,
        ),
        DatasetEntry(
            name="aspirin",
            description="aspirin, MD frames labelled with GFN2-xTB (bundled teaching set)",
            filename="aspirin_gfn2.npz",
            level_of_theory="GFN2-xTB",
            citation=GFN2_CITATION,
            n_atoms=21,
            aliases=("aspirin_gfn2",),
            **common,
        ),
        DatasetEntry(
            name="cu_vacancy",
            description="fcc copper with a vacancy, periodic MD frames labelled with EMT (bundled)",
            filename="cu_vacancy_emt.npz",
            level_of_theory="EMT",
            citation=EMT_CITATION,
            aliases=("cu_vacancy_emt", "cu"),
            **common,
        ),
        DatasetEntry(
            name="pt_cu100",
            description="Pt adatom on a Cu(100) slab, periodic in x and y, MD frames labelled "
            "with EMT (bundled)",
            filename="pt_cu100_emt.npz",
            level_of_theory="EMT",
            citation=EMT_CITATION,
            n_atoms=37,
            aliases=("pt_cu100_emt",),
            **common,
        ),
    ]


# MD17 as distributed by the sGDML group: name, file, frames, atoms.
_MD17 = [
    ("aspirin", "md17_aspirin.npz", 211_762, 21),
    ("benzene", "md17_benzene2017.npz", 627_983, 12),
    ("ethanol", "md17_ethanol.npz", 555_092, 9),
    ("malonaldehyde", "md17_malonaldehyde.npz", 993_237, 9),
    ("naphthalene", "md17_naphthalene.npz", 326_250, 18),
    ("salicylic", "md17_salicylic.npz", 320_231, 16),
    ("toluene", "md17_toluene.npz", 442_790, 15),
    ("uracil", "md17_uracil.npz", 133_770, 12),
    ("paracetamol", "paracetamol_dft.npz", 106_490, 20),
    ("azobenzene", "azobenzene_dft.npz", 99_999, 24),
]
_RMD17 = [
    ("aspirin", 21),
    ("azobenzene", 24),
    ("benzene", 12),
    ("ethanol", 9),
    ("malonaldehyde", 9),
    ("naphthalene", 18),
    ("paracetamol", 20),
    ("salicylic", 16),
    ("toluene", 15),
    ("uracil", 12),
]
# MD22: registry name, file stem on the sGDML site, frames, atoms.
_MD22 = [
    ("ac_ala3_nhme", "md22_Ac-Ala3-NHMe", 85_109, 42, "tetrapeptide Ac-Ala3-NHMe"),
    ("dha", "md22_DHA", 69_753, 56, "docosahexaenoic acid"),
    ("stachyose", "md22_stachyose", 27_272, 87, "stachyose (tetrasaccharide)"),
    ("at_at", "md22_AT-AT", 20_001, 60, "DNA base pairs AT-AT"),
    ("at_at_cg_cg", "md22_AT-AT-CG-CG", 10_153, 118, "DNA base pairs AT-AT-CG-CG"),
    ("buckyball_catcher", "md22_buckyball-catcher", 6_102, 148, "buckyball catcher complex"),
    (
        "double_walled_nanotube",
        "md22_double-walled_nanotube",
        5_032,
        370,
        "double-walled carbon nanotube",
    ),
]
#: Truncated SHA-256 of rmd17.tar.bz2 published by load-atoms (its rMD17 importer).
RMD17_ARCHIVE_SHA256_PREFIX = "cddeea2ec2c4"


def _remote() -> list[DatasetEntry]:
    out = []
    for mol, fname, n_frames, n_atoms in _MD17:
        out.append(
            DatasetEntry(
                name=f"md17_{mol}",
                kind="remote",
                description=f"MD17 {mol}: {n_frames:,} frames of DFT MD (PBE+vdW-TS), kcal/mol",
                filename=f"md17/{fname}",
                level_of_theory="PBE+vdW-TS",
                energy_unit="kcal/mol",
                length_unit="Ang",
                citation=MD17_CITATION,
                url=SGDML_NPZ_URL + fname,
                n_frames=n_frames,
                n_atoms=n_atoms,
                homepage="http://www.sgdml.org/#datasets",
            )
        )
    for mol, n_atoms in _RMD17:
        n_frames = 99_988 if mol == "azobenzene" else 100_000
        out.append(
            DatasetEntry(
                name=f"rmd17_{mol}",
                kind="remote",
                description=f"revised MD17 {mol}: {n_frames:,} frames recomputed at PBE/def2-SVP",
                filename=f"rmd17/npz_data/rmd17_{mol}.npz",
                file_format="rmd17",
                level_of_theory="PBE/def2-SVP",
                energy_unit="kcal/mol",
                length_unit="Ang",
                citation=RMD17_CITATION,
                url=RMD17_URL,
                sha256=RMD17_ARCHIVE_SHA256_PREFIX,
                archive="rmd17/rmd17.tar.bz2",
                member=f"rmd17/npz_data/rmd17_{mol}.npz",
                n_frames=n_frames,
                n_atoms=n_atoms,
                homepage="https://doi.org/10.6084/m9.figshare.12672038.v3",
                license="CC0",
            )
        )
    for key, stem, n_frames, n_atoms, what in _MD22:
        out.append(
            DatasetEntry(
                name=f"md22_{key}",
                kind="remote",
                description=f"MD22 {what}: {n_frames:,} frames of {n_atoms} atoms (PBE+MBD)",
                filename=f"md22/{stem}.npz",
                level_of_theory="PBE+MBD",
                energy_unit="kcal/mol",
                length_unit="Ang",
                citation=MD22_CITATION,
                url=SGDML_REPO_URL + stem + ".npz",
                n_frames=n_frames,
                n_atoms=n_atoms,
                homepage="http://www.sgdml.org/#datasets",
            )
        )
    return out


_ENTRIES: tuple[DatasetEntry, ...] = tuple(_bundled() + _remote())


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


_BY_KEY = {_key(alias): e for e in _ENTRIES for alias in (e.name, *e.aliases)}


def entries() -> tuple[DatasetEntry, ...]:
    """All known datasets, bundled first."""
    return _ENTRIES


def is_known(name) -> bool:
    """True when ``name`` (or an alias, any case, ``-`` or ``_``) names a known dataset."""
    return isinstance(name, str) and _key(name) in _BY_KEY


def get(name: str) -> DatasetEntry:
    """The entry for ``name`` or one of its aliases (case and ``-``/``_`` do not matter).

    Raises
    ------
    ValueError
        For an unknown name; the message suggests close matches.
    """
    entry = _BY_KEY.get(_key(name))
    if entry is None:
        close = difflib.get_close_matches(_key(name), list(_BY_KEY), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown dataset {name!r}.{hint} See mlffkit.data.available() "
            "(CLI: mlffkit data list) for the known names, or pass a file path."
        )
    return entry


def bundled_path(entry: DatasetEntry) -> Path:
    """Where a bundled dataset's file lives (it may be missing)."""
    return config.bundled_data_dir() / entry.filename


def cache_path(entry: DatasetEntry, cache_dir=None) -> Path:
    """Where a remote dataset's file lives in the cache (it may not be downloaded yet)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else config.cache_dir()
    return root / entry.filename


def available() -> dict[str, str]:
    """Names of the known datasets with a one-line description, bundled first.

    Examples
    --------
    >>> "md17_ethanol" in mlffkit.data.available()  # doctest: +SKIP
    True
    """
    return {e.name: e.description for e in _ENTRIES}


def _npz_size(path: Path) -> tuple[int | None, int | None]:
    """Frames and atoms of a bundled npz (small files: the arrays are read)."""
    with np.load(path, allow_pickle=False) as f:
        if "R" in f.files:
            n_frames, n_atoms = f["R"].shape[:2]
            return int(n_frames), int(n_atoms)
        if "n_atoms" in f.files:
            n = f["n_atoms"]
            return len(n), int(n[0]) if np.all(n == n[0]) else None
    return None, None


def info(name: str) -> dict:
    """What is known about a named dataset.

    Returns
    -------
    dict
        ``name``, ``kind`` (bundled/remote), ``description``, ``source`` (URL or
        bundled file), ``url``, ``homepage``, ``units`` (of the published file:
        ``{"energy": ..., "length": ...}``; mlffkit converts to eV and Å on load),
        ``level_of_theory``, ``citation``, ``n_frames`` and ``n_atoms`` (None if
        unknown), ``sha256`` (published checksum or prefix, None for trust on
        first use), ``path`` (where the file is or will be) and ``present``
        (whether it is there now).
    """
    e = get(name)
    try:
        path = bundled_path(e) if e.kind == "bundled" else cache_path(e)
    except FileNotFoundError:  # no bundled data folder in this installation
        path = None
    present = path is not None and path.is_file()
    n_frames, n_atoms = e.n_frames, e.n_atoms
    if e.kind == "bundled" and present:
        n_frames, n_atoms = _npz_size(path)
    return {
        "name": e.name,
        "aliases": list(e.aliases),
        "kind": e.kind,
        "description": e.description,
        "source": e.url if e.kind == "remote" else f"bundled with mlffkit ({e.filename})",
        "url": e.url,
        "homepage": e.homepage,
        "units": {"energy": e.energy_unit, "length": e.length_unit},
        "level_of_theory": e.level_of_theory,
        "citation": e.citation,
        "license": e.license,
        "n_frames": n_frames,
        "n_atoms": n_atoms,
        "sha256": e.sha256,
        "path": None if path is None else str(path),
        "present": present,
    }
