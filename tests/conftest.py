"""Shared test setup: headless matplotlib, GPU tests skipped without CUDA, small MD17 files."""

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


#: a few sGDML ethanol frames in kcal/mol and Å (the layout of sgdml's own files)
SGDML_FIXTURE = Path(__file__).parent / "fixtures" / "sgdml_ethanol_kcal.npz"


@pytest.fixture
def rmd17_file():
    """Write frames of the sGDML fixture as an rMD17-layout npz (``old_*`` labels, kcal/mol).

    Call it as ``rmd17_file(path, frames)``; it returns ``path``. The benchmark scripts
    read this layout, so tests can run them on tiny stand-ins for ``shared/data/rmd17``.
    """
    import numpy as np

    def write(path: Path, frames) -> Path:
        with np.load(SGDML_FIXTURE) as f:
            np.savez(
                path,
                nuclear_charges=f["z"],
                coords=f["R"][frames],
                old_energies=f["E"].ravel()[frames],
                old_forces=f["F"][frames],
            )
        return path

    return write
