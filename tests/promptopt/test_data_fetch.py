"""fetch_dataset against a real HTTP server on 127.0.0.1 serving zips the tests build (no internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptopt.data import load_dataset
from promptopt.data.fetch import ARCHIVES, DatasetFetchError, fetch_dataset


class _Server:
    """Serves ``files`` (URL path -> bytes) and counts the requests it answered."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def write_ml100k(folder: Path) -> Path:
    """A three-item MovieLens-100K folder (u.genre, u.item, u.data) in the original formats."""
    folder.mkdir(parents=True)
    genres = ["unknown", *(f"G{k}" for k in range(1, 19))]
    (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(genres)))
    flags = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_bytes("".join(
        f"{i}|Café {i} (1990)|01-Jan-1990||http://x|{flags}\n" for i in (1, 2, 3)
    ).encode("latin-1"))
    (folder / "u.data").write_text("1\t1\t5\t10\n1\t2\t4\t20\n2\t3\t3\t30\n2\t1\t3\t40\n3\t1\t1\t50\n")
    return folder


def _zip_of(folder: Path, prefix: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{prefix}/{path.name}")
    return buffer.getvalue()


def test_download_verify_unpack_then_load(tmp_path: Path, server: _Server) -> None:
    body = _zip_of(write_ml100k(tmp_path / "src"), "ml-100k")
    server.files["/ml-100k.zip"] = body
    digest = hashlib.sha256(body).hexdigest()
    folder = fetch_dataset("movielens-100k", tmp_path / "data", url=server.url("/ml-100k.zip"), sha256=digest)
    assert folder == tmp_path / "data" / "ml-100k"
    assert load_dataset("movielens-100k", folder).n_interactions == 5
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["ml-100k"]  # no temporary left over
    # Already unpacked: no second download unless forced.
    fetch_dataset("movielens-100k", tmp_path / "data", url=server.url("/ml-100k.zip"), sha256=digest)
    assert server.requests == ["/ml-100k.zip"]
    fetch_dataset("movielens-100k", tmp_path / "data", url=server.url("/ml-100k.zip"), sha256=digest,
                  force=True)
    assert len(server.requests) == 2


def test_checksum_mismatch_unpacks_nothing(tmp_path: Path, server: _Server) -> None:
    server.files["/ml-1m.zip"] = _zip_of(write_ml100k(tmp_path / "src"), "ml-1m")
    # No sha256 given: the pinned official value applies and cannot match the test archive.
    pinned = ARCHIVES["movielens-1m"].sha256
    with pytest.raises(DatasetFetchError, match=f"does not match the expected {pinned}"):
        fetch_dataset("movielens-1m", tmp_path / "data", url=server.url("/ml-1m.zip"))
    assert list((tmp_path / "data").iterdir()) == []


def test_unsafe_archive_paths_are_refused(tmp_path: Path, server: _Server) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/u.data", "1\t1\t5\t1\n")
        archive.writestr("../escape.txt", "gotcha")
    body = buffer.getvalue()
    server.files["/evil.zip"] = body
    with pytest.raises(DatasetFetchError, match=r"'\.\./escape\.txt' would unpack outside"):
        fetch_dataset("movielens-100k", tmp_path / "data", url=server.url("/evil.zip"),
                      sha256=hashlib.sha256(body).hexdigest())
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "data" / "ml-100k").exists()


def test_http_error_and_non_zip(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(DatasetFetchError, match=r"HTTP 404; download https://files\.grouplens\.org"):
        fetch_dataset("movielens-100k", tmp_path, url=server.url("/missing.zip"))
    server.files["/text.zip"] = b"not a zip"
    with pytest.raises(DatasetFetchError, match="is not a zip archive"):
        fetch_dataset("movielens-100k", tmp_path, url=server.url("/text.zip"),
                      sha256=hashlib.sha256(b"not a zip").hexdigest())


def test_offline_fails_fast_and_says_where_to_put_the_files(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DatasetFetchError) as info:
        fetch_dataset("movielens-latest-small", tmp_path, url=f"http://127.0.0.1:{port}/x.zip", timeout=2)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "cannot download" in message
    assert str(tmp_path / "ml-latest-small" / "ratings.csv") in message
    assert "--format movielens-latest" in message


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(DatasetFetchError, match="unknown dataset 'movielens-20m'"):
        fetch_dataset("movielens-20m", tmp_path)
