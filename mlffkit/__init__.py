"""mlffkit: a notebook-first kit for learning and analysing machine-learned force fields.

Units follow ASE everywhere inside the package: energies in eV, lengths in Å,
time in fs (ASE's ``units.fs`` for integrators), masses in amu. Loaders convert
from the units of the source (MD17 is kcal/mol) and reports show meV and kcal/mol.
"""

from mlffkit.data import Dataset, load

__version__ = "0.1.0"

__all__ = ["Dataset", "load", "__version__"]
