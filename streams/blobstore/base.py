"""The blob store interface behind the claim-check pattern, and helpers every backend shares."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from ocrflux.errors import FetchFailed

#: A whole download may take this long by default: a 100 MB document at ~2 MB/s.
DEFAULT_TIMEOUT_S = 60.0

#: Characters kept from a caller's name in a blob's key; anything else becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME_CHARS = 100


class BlobStoreError(RuntimeError):
    """A blob could not be written (storage refused, unreachable or full)."""


class BlobReader(ABC):
    """Reads blobs by URL. Errors are `FetchFailed` (missing, refused, unreachable) and
    `TooLarge` (over `max_bytes`), both from `ocrflux.errors`."""

    #: URL schemes this backend reads.
    schemes: tuple[str, ...] = ()

    @abstractmethod
    async def get(self, url: str, *, max_bytes: int) -> bytes:
        """The blob's bytes; `TooLarge` when it holds more than `max_bytes`."""

    async def close(self) -> None:  # noqa: B027 - a backend without resources needs no close
        """Release connections and clients; the reader is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class BlobStore(BlobReader):
    """Reads and writes blobs. `put` is idempotent: the same bytes and name give the same URL."""

    @abstractmethod
    async def put(self, data: bytes, name: str) -> str:
        """Store `data` under a content-addressed key ending in `name`; returns its URL."""


def blob_key(data: bytes, name: str) -> str:
    """`<sha256 of data>/<name made safe>`: equal bytes and name always give the same key."""
    return f"{hashlib.sha256(data).hexdigest()}/{safe_name(name)}"


def safe_name(name: str) -> str:
    """The last path component of `name`, with unsafe characters replaced; never empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._")[:_MAX_NAME_CHARS]
    return cleaned or "blob"


def unsupported_scheme(url: str, reader: str) -> FetchFailed:
    scheme = url.split(":", 1)[0] if ":" in url else "(none)"
    return FetchFailed(f"{reader} cannot read URL scheme {scheme!r}: {url}")
