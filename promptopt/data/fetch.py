"""Download an official MovieLens archive, verify its SHA-256, unpack it (only when asked).

Loaders never download. ``promptopt data fetch NAME DEST`` calls :func:`fetch_dataset`, which
fetches the GroupLens zip over HTTPS, checks it against a pinned SHA-256 before anything is
unpacked, and extracts it under ``DEST``. Without network access it fails within ``timeout``
seconds and says where to put the files by hand.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from promptopt.errors import DataFormatError

logger = logging.getLogger(__name__)


class DatasetFetchError(DataFormatError):
    """A dataset could not be downloaded or did not verify; nothing was unpacked."""


@dataclass(frozen=True)
class Archive:
    """An official dataset archive.

    Attributes:
        url: Where GroupLens publishes it.
        sha256: Expected SHA-256 of the zip.
        size: Expected size in bytes (for the progress log only).
        folder: The folder the zip unpacks to.
        format: The ``data.format`` that reads the folder.
        marker: A file whose presence means the dataset is already unpacked.
    """

    url: str
    sha256: str
    size: int
    folder: str
    format: str
    marker: str


# SHA-256 values as recorded by tensorflow_datasets (url_checksums/movielens.txt); GroupLens itself
# publishes MD5 sums only. The "latest-small" archive is re-released from time to time: a new
# release fails verification until the value here is updated.
ARCHIVES: dict[str, Archive] = {
    "movielens-100k": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4_924_029,
        "ml-100k", "movielens-100k", "u.data",
    ),
    "movielens-1m": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5_917_549,
        "ml-1m", "movielens-1m", "ratings.dat",
    ),
    "movielens-latest-small": Archive(
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978_202,
        "ml-latest-small", "movielens-latest", "ratings.csv",
    ),
}


def fetch_dataset(
    name: str,
    dest: str | Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 10.0,
    force: bool = False,
) -> Path:
    """Download, verify and unpack dataset ``name`` under ``dest``; return the dataset folder.

    Args:
        name: ``movielens-100k``, ``movielens-1m`` or ``movielens-latest-small``.
        dest: Folder to unpack into (created); the dataset lands in ``dest / <archive folder>``.
        url: Another URL of the same archive (a mirror); the pinned SHA-256 still applies unless
            ``sha256`` is given.
        sha256: Expected SHA-256 of the zip, replacing the pinned value.
        timeout: Seconds to wait for the server (connecting and each read).
        force: Download even when the dataset folder already holds the dataset.

    Raises:
        DatasetFetchError: Unknown name, no connection (the message says where to put the files),
            a checksum mismatch, or an archive with unsafe paths. Nothing is unpacked then.
    """
    archive = ARCHIVES.get(name)
    if archive is None:
        raise DatasetFetchError(f"unknown dataset {name!r}: fetch one of {', '.join(ARCHIVES)}")
    dest = Path(dest)
    target = dest / archive.folder
    if (target / archive.marker).is_file() and not force:
        logger.info("%s already holds %s; not downloading (force=True downloads again)", target, name)
        return target
    source = url or archive.url
    expected = (sha256 or archive.sha256).lower()
    manual = (
        f"download {archive.url} yourself and unzip it so that {target / archive.marker} exists, "
        f"then load it with --format {archive.format}"
    )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        zip_path = Path(tmp) / "archive.zip"
        digest = _download(source, zip_path, timeout, manual)
        if digest != expected:
            raise DatasetFetchError(
                f"{source}: SHA-256 {digest} does not match the expected {expected}; the file was "
                f"discarded and nothing was unpacked (if the archive was re-released: {manual})"
            )
        _unpack(zip_path, dest, source)
    if not (target / archive.marker).is_file():
        raise DatasetFetchError(
            f"{source}: the archive did not contain {archive.folder}/{archive.marker}; {manual}"
        )
    logger.info("unpacked %s into %s", name, target)
    return target


def _download(url: str, path: Path, timeout: float, manual: str) -> str:
    """Stream ``url`` to ``path``; return the SHA-256 hex digest of the bytes."""
    logger.info("downloading %s", url)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, path.open("wb") as out:
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise DatasetFetchError(f"{url}: the server answered HTTP {exc.code}; {manual}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetFetchError(f"{url}: cannot download ({reason}); offline? {manual}") from None
    return digest.hexdigest()


def _unpack(zip_path: Path, dest: Path, source: str) -> None:
    """Extract every member under ``dest``, refusing absolute paths and ``..`` (zip slip)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            for member in members:
                parts = PurePosixPath(member.filename).parts
                if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in member.filename:
                    raise DatasetFetchError(
                        f"{source}: archive member {member.filename!r} would unpack outside {dest}; "
                        "refusing the archive"
                    )
            for member in members:
                out = dest.joinpath(*PurePosixPath(member.filename).parts)
                if member.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile:
        raise DatasetFetchError(f"{source}: the download is not a zip archive") from None
