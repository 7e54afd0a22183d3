"""Safe file writing: atomic replacement and no silent overwrite of a user's file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def check_writable(path, overwrite: bool) -> Path:
    """Return ``path`` as a Path, or raise if it exists and ``overwrite`` is False.

    Raises
    ------
    FileExistsError
        If the file exists and overwriting was not asked for.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it, "
            "or choose another name"
        )
    return path


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = False):
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    A reader never sees a half-written file: the data go to a temporary file in
    the same folder, which is renamed over the target only after the block ends
    without an exception (``os.replace`` is atomic on POSIX and Windows).

    Examples
    --------
    >>> with atomic_path("out.npz", overwrite=True) as tmp:  # doctest: +SKIP
    ...     np.savez(tmp, x=1)
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)
