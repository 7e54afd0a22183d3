"""Data layer: datasets in eV and Å, readers and writers, downloads and leak-free splits.

>>> import mlffkit
>>> ds = mlffkit.data.load("ethanol")            # bundled GFN2-xTB ethanol  # doctest: +SKIP
>>> split = mlffkit.data.random_split(ds, n_train=1000, n_valid=500, seed=0)  # doctest: +SKIP
>>> train, valid, test = split.apply(ds)          # doctest: +SKIP
"""

from mlffkit.data.dataset import Dataset, as_atomic_numbers
from mlffkit.data.download import fetch
from mlffkit.data.formats import convert, load, save
from mlffkit.data.registry import available, info
from mlffkit.data.splits import Split, check_disjoint, random_split, stratified_split

__all__ = [
    "Dataset",
    "Split",
    "as_atomic_numbers",
    "available",
    "check_disjoint",
    "convert",
    "fetch",
    "info",
    "load",
    "random_split",
    "save",
    "stratified_split",
]
