"""`file://` blobs in a local folder (the default store: one machine, or a shared mount)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from ocrflux.errors import FetchFailed, TooLarge
from streams.blobstore.base import BlobStore, BlobStoreError, blob_key, unsupported_scheme


class FileBlobStore(BlobStore):
    """Blobs as files under `root`. Reads are confined to `root`: a `file://` reference that
    points elsewhere (say `/etc/passwd`) is refused, since references come from producers."""

    schemes = ("file",)

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def base_url(self) -> str:
        return self.root.as_uri()

    async def put(self, data: bytes, name: str) -> str:
        path = self.root / blob_key(data, name)
        try:
            await asyncio.to_thread(_write_once, path, data)
        except OSError as exc:
            raise BlobStoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return path.as_uri()

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        path = self.path_of(url)
        return await asyncio.to_thread(_read_limited, path, max_bytes, url)

    def path_of(self, url: str) -> Path:
        """The file a `file://` URL names, if it lies inside the root (else `FetchFailed`)."""
        path = path_from_file_url(url)
        if not path.is_relative_to(self.root):
            raise FetchFailed(f"file URL outside the blob folder {self.root}: {url}")
        return path


def path_from_file_url(url: str) -> Path:
    """The absolute local path of a `file://` URL (`FetchFailed` for another scheme or host)."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise unsupported_scheme(url, "the file blob store")
    if parts.netloc not in ("", "localhost"):
        raise FetchFailed(f"file URL names another host: {url}")
    return Path(url2pathname(unquote(parts.path))).resolve()


def _write_once(path: Path, data: bytes) -> None:
    """Write atomically; a blob already there has the same bytes (its key is their digest)."""
    if path.exists() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_limited(path: Path, max_bytes: int, url: str) -> bytes:
    try:
        with path.open("rb") as blob:
            size = os.fstat(blob.fileno()).st_size
            if size > max_bytes:
                raise TooLarge(f"{url} holds {size} bytes, more than the limit of {max_bytes}")
            data = blob.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise FetchFailed(f"no such blob: {url}") from exc
    except IsADirectoryError as exc:
        raise FetchFailed(f"not a blob but a folder: {url}") from exc
    except OSError as exc:
        raise FetchFailed(f"cannot read {url}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise TooLarge(f"{url} holds more than the limit of {max_bytes} bytes")
    return data
