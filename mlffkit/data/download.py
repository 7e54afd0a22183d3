"""Download public datasets once, check them, and keep them in the cache.

:func:`fetch` downloads a named remote dataset (see :mod:`mlffkit.data.registry`)
into :func:`mlffkit.config.cache_dir`, using only the standard library (urllib):

1. the data go to a temporary file beside the target, hashed while they stream
   in, with a tqdm progress bar;
2. the SHA-256 is compared with the published checksum (or its published
   prefix); a mismatch deletes the temporary file and raises
   :class:`ChecksumError`, so a corrupt download never lands in the cache;
3. the file is renamed onto its final name atomically.

Where no checksum is published, the SHA-256 of the first download is recorded in
``<file>.sha256`` next to it (trust on first use) and every later :func:`fetch`
checks the cached file against that record. Files that come inside an archive
(rMD17) are extracted, each with its own record, and the archive is removed.

On a machine without internet access the error says which URL to download on
another machine and the exact path to put the file at; :func:`fetch` then checks
it and uses it.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from mlffkit import config
from mlffkit.data import registry
from mlffkit.fileio import atomic_path

_CHUNK = 1 << 20
# Files taken out of the rMD17 archive: the data and the published splits, nothing else
# (member names are matched, never used as paths, so the archive cannot write elsewhere).
_RMD17_MEMBER = re.compile(r"^rmd17/(npz_data/[\w.\-]+\.npz|splits/[\w.\-]+\.csv)$")


class DownloadError(RuntimeError):
    """A file could not be downloaded (offline, server error, interrupted)."""


class ChecksumError(RuntimeError):
    """A downloaded or cached file does not match its expected SHA-256."""


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _matches(digest: str, expected: str) -> bool:
    """A full SHA-256 must match exactly; a published prefix must start the digest."""
    expected = expected.lower().removeprefix("sha256:")
    if len(expected) < 12 or not re.fullmatch(r"[0-9a-f]+", expected):
        raise ValueError(f"checksum {expected!r} is not a SHA-256 (or a prefix of 12+ hex digits)")
    return digest == expected if len(expected) == 64 else digest.startswith(expected)


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_record(path: Path, digest: str) -> None:
    """Record a file's SHA-256 beside it, in ``sha256sum`` format."""
    with atomic_path(_record_path(path), overwrite=True) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n")


def _read_record(path: Path) -> str | None:
    rec = _record_path(path)
    if not rec.is_file():
        return None
    return rec.read_text().split()[0].strip().lower()


def _offline_help(url: str, dest: Path) -> str:
    return (
        f"If this computer is offline, download\n    {url}\non another machine and put the "
        f"file at exactly\n    {dest}\nmlffkit checks it and uses it from there."
    )


def download_file(
    url: str, dest, *, sha256: str | None = None, progress: bool = True, timeout: float = 60.0
) -> str:
    """Download ``url`` to ``dest`` atomically, verifying its SHA-256 on the way.

    Parameters
    ----------
    url : str
        HTTP(S) address.
    dest : path-like
        Final path. The data go to a temporary file in the same folder that is
        renamed onto ``dest`` only once complete and verified; an existing
        ``dest`` is replaced.
    sha256 : str, optional
        Expected SHA-256 in hex, or a published prefix of it (12+ hex digits).
        None skips the check (the caller records the digest instead).
    progress : bool
        Show a tqdm progress bar.
    timeout : float
        Seconds to wait for the server to answer or send more data.

    Returns
    -------
    str
        The hex SHA-256 of the downloaded file.

    Raises
    ------
    DownloadError
        When the server cannot be reached, answers with an error, or the transfer
        stops early. Nothing is left at ``dest``.
    ChecksumError
        When the data do not match ``sha256``. Nothing is left at ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mlffkit (urllib)"})
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(request, timeout=timeout) as resp,
            ):
                total = resp.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                received = 0
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                    leave=False,
                ) as bar:
                    for block in iter(lambda: resp.read(_CHUNK), b""):
                        out.write(block)
                        h.update(block)
                        received += len(block)
                        bar.update(len(block))
                if total is not None and received != total:
                    raise DownloadError(
                        f"the download of {url} stopped after {received:,} of {total:,} bytes; "
                        "try again.\n" + _offline_help(url, dest)
                    )
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as err:
            raise DownloadError(
                f"the server answered {err.code} ({err.reason}) for {url}.\n"
                + _offline_help(url, dest)
            ) from err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(
                f"could not download {url}: {reason}.\n" + _offline_help(url, dest)
            ) from err
        digest = h.hexdigest()
        if sha256 is not None and not _matches(digest, sha256):
            raise ChecksumError(
                f"the file downloaded from {url} is corrupt or not the published one: its SHA-256 "
                f"is {digest}, expected {sha256}. Nothing was saved; try again, and if it "
                "persists the file on the server has changed."
            )
        os.replace(tmp, dest)
        return digest
    finally:
        if tmp.exists():
            tmp.unlink()


def _verify_cached(path: Path, expected: str | None) -> None:
    """Check a cached file against its published checksum or its first-use record."""
    digest = sha256_file(path)
    if expected is None:
        expected = _read_record(path)
        if expected is None:  # placed there by hand or an interrupted earlier run: trust it now
            _write_record(path, digest)
            return
    if not _matches(digest, expected):
        raise ChecksumError(
            f"the cached file {path} has SHA-256 {digest}, but {expected} was expected (recorded "
            "when it was first downloaded, or published); it is corrupt or was changed. Delete it "
            "and fetch again to download a fresh copy."
        )


def _extract_archive(archive: Path, root: Path) -> list[Path]:
    """Extract the rMD17 data files from ``archive`` into ``root``, recording their SHA-256."""
    out = []
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            if not (member.isfile() and _RMD17_MEMBER.match(member.name)):
                continue
            target = root / member.name
            src = tar.extractfile(member)
            h = hashlib.sha256()
            with atomic_path(target, overwrite=True) as tmp, open(tmp, "wb") as fh:
                for block in iter(functools.partial(src.read, _CHUNK), b""):
                    fh.write(block)
                    h.update(block)
            _write_record(target, h.hexdigest())
            out.append(target)
    return out


def fetch(name: str, *, cache_dir=None, url: str | None = None, progress: bool = True) -> Path:
    """Path of a remote dataset's file in the cache, downloading it on first use.

    Parameters
    ----------
    name : str
        A remote dataset name, e.g. ``"md17_ethanol"``, ``"rmd17_aspirin"`` or
        ``"md22_ac_ala3_nhme"`` (see :func:`mlffkit.data.available`).
    cache_dir : path-like, optional
        Cache folder; default :func:`mlffkit.config.cache_dir` (``$MLFFKIT_CACHE``
        or ``~/.cache/mlffkit``).
    url : str, optional
        Download from this address (a mirror) instead of the official one. The
        published checksum, where there is one, still applies.
    progress : bool
        Show a progress bar while downloading.

    Returns
    -------
    pathlib.Path
        The verified file, e.g. ``~/.cache/mlffkit/md17/md17_ethanol.npz``.

    Raises
    ------
    ValueError
        For an unknown or bundled dataset name.
    DownloadError
        When offline or the server fails; the message names the URL to download
        and the exact path to put the file at.
    ChecksumError
        When a download or a cached file does not match its checksum.
    """
    entry = registry.get(name)
    if entry.kind != "remote":
        raise ValueError(
            f"{entry.name!r} ships with mlffkit and needs no download; load it with "
            f"mlffkit.data.load({entry.name!r})"
        )
    root = Path(cache_dir).expanduser() if cache_dir is not None else config.cache_dir()
    target = root / entry.filename
    source = url or entry.url

    if entry.archive is None:
        if target.is_file():
            _verify_cached(target, entry.sha256)
            return target
        digest = download_file(source, target, sha256=entry.sha256, progress=progress)
        if entry.sha256 is None:
            _write_record(target, digest)
        return target

    # Published inside an archive: the archive's checksum is the published one and each
    # extracted file gets a record of its own, so the cache can be checked without it.
    if target.is_file():
        _verify_cached(target, None)
        return target
    archive = root / entry.archive
    if archive.is_file():  # put there by hand (offline machine) or left by an interrupted run
        _verify_cached(archive, entry.sha256)
    else:
        digest = download_file(source, archive, sha256=entry.sha256, progress=progress)
        if entry.sha256 is None:
            _write_record(archive, digest)
    extracted = _extract_archive(archive, root)
    if not target.is_file():
        raise ChecksumError(
            f"{archive} holds no {entry.member} ({len(extracted)} data files found); it is not "
            f"the published archive. Delete it and fetch {entry.name!r} again."
        )
    archive.unlink()
    _record_path(archive).unlink(missing_ok=True)
    return target
