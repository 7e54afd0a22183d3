"""mlffkit: a notebook-first kit for learning and analysing machine-learned force fields.

Units follow ASE everywhere inside the package: energies in eV, lengths in Å,
time in fs (ASE's ``units.fs`` for integrators), masses in amu. Loaders convert
from the units of the source (MD17 is kcal/mol) and reports show meV and kcal/mol.
"""

__version__ = "0.1.0"

from mlffkit import data, descriptors, evaluation, models  # noqa: E402
from mlffkit.data import Dataset, load  # noqa: E402
from mlffkit.models import load_model  # noqa: E402

__all__ = [
    "Dataset",
    "__version__",
    "data",
    "descriptors",
    "evaluation",
    "load",
    "load_model",
    "models",
]
