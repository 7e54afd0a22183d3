"""Process-wide settings read from the environment: quick mode, cache and data folders."""

from __future__ import annotations

import os
from pathlib import Path

QUICK_ENV = "MLFFKIT_QUICK"
CACHE_ENV = "MLFFKIT_CACHE"
DATA_ENV = "MLFFKIT_DATA"


def quick_mode() -> bool:
    """True when ``MLFFKIT_QUICK`` is set to a true value (``1``, ``true``, ``yes``).

    Notebooks and the quickstart shrink their sizes in quick mode so that the
    whole course runs in minutes on two CPU cores; a full run gives real results.
    """
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(quick, full):
    """Return ``quick`` in quick mode and ``full`` otherwise (sizes for notebooks)."""
    return quick if quick_mode() else full


def cache_dir() -> Path:
    """Folder for downloaded datasets.

    ``$MLFFKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/mlffkit``, else ``~/.cache/mlffkit``.
    The folder is created on first use.
    """
    if os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base).expanduser() / "mlffkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bundled_data_dir() -> Path:
    """Folder of the datasets shipped with mlffkit.

    ``$MLFFKIT_DATA`` if set; else the ``data/`` folder of a source checkout
    (editable install); else the copy a wheel carries inside the package.
    """
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "data", here / "_bundled_data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "mlffkit's bundled data folder was not found next to the package; "
        f"set {DATA_ENV} to the data/ folder of an mlffkit checkout."
    )
