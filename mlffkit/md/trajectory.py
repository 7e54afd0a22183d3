"""Writing an MD trajectory frame by frame, atomically: ASE ``.traj`` or extended XYZ."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import ase.io
from ase import Atoms
from ase.io.trajectory import Trajectory

from mlffkit.fileio import atomic_path

#: File suffixes a trajectory can be written to, and the ASE format of each.
TRAJECTORY_FORMATS = {".traj": "traj", ".extxyz": "extxyz", ".xyz": "extxyz"}


def trajectory_format(path) -> str:
    """The ASE format (``"traj"`` or ``"extxyz"``) for a trajectory file name.

    Raises
    ------
    ValueError
        For another suffix, naming the ones accepted.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in TRAJECTORY_FORMATS:
        raise ValueError(
            f"cannot write a trajectory to {str(path)!r}: use a name ending in "
            f"{', '.join(TRAJECTORY_FORMATS)} (ASE trajectory or extended XYZ)"
        )
    return TRAJECTORY_FORMATS[suffix]


class TrajectoryWriter:
    """Context manager that appends frames to a trajectory file while a run goes.

    Frames go to a hidden temporary file beside ``path`` (flushed after every frame),
    which replaces ``path`` when the block ends without an exception. A reader never
    sees half a file, and an existing file is never replaced by a run that crashed.
    Energies, forces (from each frame's calculator) and momenta are written with the
    positions.

    Parameters
    ----------
    path : str or Path
        ``.traj`` (ASE binary trajectory) or ``.extxyz`` / ``.xyz`` (extended XYZ).
    overwrite : bool, default False
        Replace an existing file. Checked on entering the block, before any MD runs.
    """

    def __init__(self, path, overwrite: bool = False):
        self.path = Path(path)
        self.format = trajectory_format(self.path)
        self.overwrite = overwrite
        self.n_frames = 0
        self._stack: ExitStack | None = None
        self._sink = None

    def __enter__(self) -> TrajectoryWriter:
        with ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path, overwrite=self.overwrite))
            if self.format == "traj":
                self._sink = stack.enter_context(Trajectory(tmp, "w"))
            else:
                self._sink = stack.enter_context(open(tmp, "w"))
            self._stack = stack.pop_all()
        return self

    def write(self, atoms: Atoms) -> None:
        """Append one frame."""
        if self._sink is None:
            raise RuntimeError("TrajectoryWriter.write called outside its `with` block")
        if self.format == "traj":
            self._sink.write(atoms)  # syncs the file after each frame
        else:
            ase.io.write(self._sink, atoms, format="extxyz")
            self._sink.flush()
        self.n_frames += 1

    def __exit__(self, *exc) -> bool:
        stack, self._stack, self._sink = self._stack, None, None
        return stack.__exit__(*exc)
