"""The downloader against a real HTTP server on 127.0.0.1, and the dataset registry.

The server runs in a thread for the duration of one test, serves files the test
makes and counts the requests it gets; nothing leaves the machine.
"""

import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mlffkit import units
from mlffkit.data import available, info, load, registry
from mlffkit.data.download import ChecksumError, DownloadError, download_file, fetch

FIXTURES = Path(__file__).parent / "fixtures"


class _Server:
    """Serves ``files`` (path -> bytes) and counts requests per path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture()
def server():
    with _Server() as s:
        yield s


@pytest.fixture()
def md17_bytes():
    """A small file in the layout of the published MD17 npz files (kcal/mol, Å)."""
    buf = io.BytesIO()
    with np.load(FIXTURES / "sgdml_ethanol_kcal.npz") as f:
        np.savez(buf, **{k: f[k] for k in ("R", "z", "E", "F", "name", "theory")})
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_verifies_and_lands_atomically(tmp_path, server, md17_bytes):
    server.files["/md17_ethanol.npz"] = md17_bytes
    dest = tmp_path / "sub" / "md17_ethanol.npz"
    digest = download_file(
        server.url + "/md17_ethanol.npz",
        dest,
        progress=False,
        sha256=hashlib.sha256(md17_bytes).hexdigest(),
    )
    assert dest.read_bytes() == md17_bytes and digest == hashlib.sha256(md17_bytes).hexdigest()
    assert [p.name for p in dest.parent.iterdir()] == ["md17_ethanol.npz"]  # no temp files


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path, server, md17_bytes):
    server.files["/x.npz"] = md17_bytes
    dest = tmp_path / "x.npz"
    with pytest.raises(ChecksumError, match="corrupt or not the published one"):
        download_file(server.url + "/x.npz", dest, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_caches_records_and_reuses(tmp_path, server, md17_bytes):
    server.files["/md17_ethanol.npz"] = md17_bytes
    url = server.url + "/md17_ethanol.npz"
    path = fetch("md17_ethanol", cache_dir=tmp_path, url=url, progress=False)
    assert path == tmp_path / "md17" / "md17_ethanol.npz"
    record = path.with_name("md17_ethanol.npz.sha256").read_text()
    assert record.split()[0] == hashlib.sha256(md17_bytes).hexdigest()  # trust on first use
    assert fetch("md17_ethanol", cache_dir=tmp_path, url=url, progress=False) == path
    assert server.hits["/md17_ethanol.npz"] == 1  # the second call used the cache


def test_changed_cached_file_is_detected(tmp_path, server, md17_bytes):
    server.files["/f.npz"] = md17_bytes
    path = fetch("md17_ethanol", cache_dir=tmp_path, url=server.url + "/f.npz", progress=False)
    path.write_bytes(md17_bytes[:-10] + b"0123456789")
    with pytest.raises(ChecksumError, match="corrupt or was changed. Delete it"):
        fetch("md17_ethanol", cache_dir=tmp_path, url=server.url + "/f.npz", progress=False)


def test_offline_error_says_what_to_download_and_where(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/md22_DHA.npz"  # nothing listens there
    with pytest.raises(DownloadError) as err:
        fetch("md22_dha", cache_dir=tmp_path, url=url, progress=False)
    message = str(err.value)
    assert url in message
    assert str(tmp_path / "md22" / "md22_DHA.npz") in message
    assert "offline" in message
    assert not (tmp_path / "md22" / "md22_DHA.npz").exists()


def test_http_error_is_reported(tmp_path, server):
    with pytest.raises(DownloadError, match="answered 404"):
        fetch("md17_aspirin", cache_dir=tmp_path, url=server.url + "/missing.npz", progress=False)
    assert server.hits["/missing.npz"] == 1


def _rmd17_archive(md17_bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        for name, data in (
            ("rmd17/npz_data/rmd17_ethanol.npz", md17_bytes),
            ("rmd17/splits/index_train_01.csv", b"1\n2\n"),
            ("rmd17/readme.txt", b"not extracted"),
        ):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()


def test_archive_that_fails_the_published_checksum_is_not_kept(tmp_path, server, md17_bytes):
    server.files["/rmd17.tar.bz2"] = _rmd17_archive(md17_bytes)
    with pytest.raises(ChecksumError, match=registry.RMD17_ARCHIVE_SHA256_PREFIX):
        fetch(
            "rmd17_ethanol", cache_dir=tmp_path, url=server.url + "/rmd17.tar.bz2", progress=False
        )
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_archive_placed_by_hand_is_checked_before_use(tmp_path, md17_bytes):
    archive = tmp_path / "rmd17" / "rmd17.tar.bz2"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(_rmd17_archive(md17_bytes))
    with pytest.raises(ChecksumError, match="corrupt or was changed"):
        fetch("rmd17_ethanol", cache_dir=tmp_path, progress=False)


def test_archive_extraction(tmp_path, server, md17_bytes, monkeypatch):
    """With the registry's checksum replaced by the test archive's, the member is
    extracted with its own record and the archive removed."""
    data = _rmd17_archive(md17_bytes)
    server.files["/rmd17.tar.bz2"] = data
    entry = registry.get("rmd17_ethanol")
    patched = {
        **registry._BY_KEY,
        "rmd17_ethanol": registry.DatasetEntry(
            **{**entry.__dict__, "sha256": hashlib.sha256(data).hexdigest()}
        ),
    }
    monkeypatch.setattr(registry, "_BY_KEY", patched)
    path = fetch(
        "rmd17_ethanol", cache_dir=tmp_path, url=server.url + "/rmd17.tar.bz2", progress=False
    )
    assert path.read_bytes() == md17_bytes
    assert (tmp_path / "rmd17" / "splits" / "index_train_01.csv").read_text() == "1\n2\n"
    assert not (tmp_path / "rmd17" / "readme.txt").exists()
    assert not (tmp_path / "rmd17" / "rmd17.tar.bz2").exists()
    assert path.with_name(path.name + ".sha256").is_file()
    assert fetch("rmd17_ethanol", cache_dir=tmp_path, progress=False) == path  # no network


def test_load_by_name_uses_the_cache_and_the_published_units(
    tmp_path, server, md17_bytes, monkeypatch
):
    monkeypatch.setenv("MLFFKIT_CACHE", str(tmp_path))
    server.files["/md17_ethanol.npz"] = md17_bytes
    fetch("md17_ethanol", url=server.url + "/md17_ethanol.npz", progress=False)
    ds = load("md17_ethanol", index="::4")  # from the cache: no download, no unit argument
    raw = np.load(io.BytesIO(md17_bytes))
    assert ds.name == "md17_ethanol" and ds.level_of_theory == "PBE+vdW-TS"
    assert np.allclose(ds.energies, raw["E"][::4] * units.KCAL_PER_MOL, rtol=1e-15)
    with pytest.raises(ValueError, match="kcal/mol, but energy_unit='eV'"):
        load("md17_ethanol", energy_unit="eV")
    assert server.hits["/md17_ethanol.npz"] == 1


def test_fetch_refuses_bundled_and_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="ships with mlffkit"):
        fetch("ethanol", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="Did you mean 'md17_ethanol'"):
        fetch("md17_ethnol", cache_dir=tmp_path)


# ------------------------------------------------------------------ registry
def test_available_lists_bundled_and_remote_sets():
    names = available()
    for name in (
        "ethanol",
        "aspirin",
        "cu_vacancy",
        "md17_ethanol",
        "rmd17_ethanol",
        "md22_ac_ala3_nhme",
        "md22_double_walled_nanotube",
    ):
        assert name in names and names[name]
    assert list(names)[:3] == ["ethanol", "aspirin", "cu_vacancy"]


def test_info_and_aliases(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFFKIT_CACHE", str(tmp_path))
    d = info("MD22-Ac-Ala3-NHMe")
    assert d["name"] == "md22_ac_ala3_nhme"
    assert d["url"] == "http://www.quantum-machine.org/gdml/repo/datasets/md22_Ac-Ala3-NHMe.npz"
    assert d["units"] == {"energy": "kcal/mol", "length": "Ang"}
    assert (d["n_frames"], d["n_atoms"], d["present"]) == (85_109, 42, False)
    assert "Sci. Adv. 9" in d["citation"]
    assert (
        info("md17_ethanol")["url"]
        == "http://www.quantum-machine.org/gdml/data/npz/md17_ethanol.npz"
    )
    rmd = info("rmd17_aspirin")
    assert rmd["url"] == "https://figshare.com/ndownloader/files/23950376"
    assert rmd["level_of_theory"] == "PBE/def2-SVP" and rmd["sha256"]
    assert info("cu")["name"] == info("cu_vacancy_emt")["name"] == "cu_vacancy"
