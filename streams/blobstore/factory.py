"""Picking a blob backend by URL scheme: `open_blob_store` for writing, `BlobFetcher` and
`fetch` for reading any reference a record may carry."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from deploy.kafka_broker import cache_home
from ocrflux.errors import FetchFailed
from ocrflux.settings_base import OcrfluxSettings
from streams.blobstore.base import DEFAULT_TIMEOUT_S, BlobReader, BlobStore, unsupported_scheme
from streams.blobstore.file import FileBlobStore, path_from_file_url
from streams.blobstore.url_policy import IpNetwork, UrlPolicy, parse_networks


def default_blob_dir() -> Path:
    """`.cache/blobs` of the checkout (or under `OCRFLUX_HOME` when that is set)."""
    return cache_home() / "blobs"


class BlobSettings(OcrfluxSettings):
    """Where claim-checked blobs go and how references are read (frozen).

        OCRFLUX_BLOB_URL       where `put` writes: file:///folder or s3://bucket/prefix;
                               default: the `file://` folder below
        OCRFLUX_BLOB_DIR       the `file://` folder, and the only one `file://` references may
                               point into; default `.cache/blobs` of the checkout
        OCRFLUX_FETCH_TIMEOUT_S  time limit of one `http(s)://` download
        OCRFLUX_FETCH_ALLOW    CIDRs that fetches of caller-given URLs (`http(s)://`
                               references, the API's `/convert/url` and callbacks) may reach
                               although not public (`streams.blobstore.url_policy`)

    S3 endpoint, region and credentials follow botocore's usual chain (`AWS_ENDPOINT_URL`,
    `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, ...), see `streams.blobstore.s3`.
    """

    ocrflux_blob_url: str | None = None
    ocrflux_blob_dir: Path = Field(default_factory=default_blob_dir)
    ocrflux_fetch_timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    ocrflux_fetch_allow: str = Field(
        default="",
        description="CIDRs that http(s) references, /convert/url and callbacks may reach "
        "although private or loopback, comma-separated (e.g. 10.1.0.0/16 for an internal "
        "document store)",
    )

    @field_validator("ocrflux_fetch_allow")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        parse_networks(value)  # ValueError names the bad entry
        return value

    @property
    def base_url(self) -> str:
        return self.ocrflux_blob_url or self.ocrflux_blob_dir.expanduser().resolve().as_uri()

    @property
    def fetch_allow(self) -> tuple[IpNetwork, ...]:
        return parse_networks(self.ocrflux_fetch_allow)

    def url_policy(self) -> UrlPolicy:
        """The SSRF policy of every fetch of a caller-given URL."""
        return UrlPolicy(self.fetch_allow)


def open_blob_store(
    base_url: str | None = None, *, settings: BlobSettings | None = None
) -> BlobStore:
    """The store that writes under `base_url` (`file://` folder or `s3://bucket/prefix`);
    None means `settings.base_url`."""
    settings = settings or BlobSettings()
    url = base_url or settings.base_url
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileBlobStore(path_from_file_url(url))
    if parts.scheme == "s3":
        from streams.blobstore.s3 import S3BlobStore  # aiobotocore: only where s3:// is used

        return S3BlobStore.from_url(url)
    if parts.scheme in ("http", "https"):
        raise ValueError(f"http(s) references are read-only; cannot store blobs at {url}")
    raise ValueError(f"unsupported blob store URL {url!r}: use file:///folder or s3://bucket")


class BlobFetcher(BlobReader):
    """Reads `file://`, `s3://` and `http(s)://` references, each with its backend (opened on
    first use and closed with the fetcher). `stores` given by the caller are used for their
    schemes first, and are closed by their owner, not here."""

    schemes = ("file", "s3", "http", "https")

    def __init__(
        self, settings: BlobSettings | None = None, *, stores: tuple[BlobReader, ...] = ()
    ) -> None:
        self._settings = settings or BlobSettings()
        self._given = stores
        self._opened: dict[str, BlobReader] = {}

    def _reader(self, scheme: str) -> BlobReader | None:
        for store in self._given:
            if scheme in store.schemes:
                return store
        if scheme not in self._opened:
            if scheme == "file":
                self._opened["file"] = FileBlobStore(self._settings.ocrflux_blob_dir)
            elif scheme == "s3":
                from streams.blobstore.s3 import S3BlobStore

                self._opened["s3"] = S3BlobStore()
            elif scheme in ("http", "https"):
                from streams.blobstore.http import HttpFetcher  # aiohttp: only for http(s)://

                fetcher = HttpFetcher(
                    self._settings.url_policy(), timeout_s=self._settings.ocrflux_fetch_timeout_s
                )
                self._opened["http"] = self._opened["https"] = fetcher
            else:
                return None
        return self._opened[scheme]

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        reader = self._reader(urlsplit(url).scheme.lower())
        if reader is None:
            raise unsupported_scheme(url, "the blob fetcher")
        return await reader.get(url, max_bytes=max_bytes)

    async def fetch(self, url: str, *, max_bytes: int, expected_sha256: str | None = None) -> bytes:
        """`get`, and when `expected_sha256` is given, `FetchFailed` unless the bytes match."""
        data = await self.get(url, max_bytes=max_bytes)
        if expected_sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected_sha256.lower():
                raise FetchFailed(
                    f"{url} does not hold the announced content: sha256 {actual}, "
                    f"expected {expected_sha256}"
                )
        return data

    async def close(self) -> None:
        opened = {id(reader): reader for reader in self._opened.values()}
        self._opened.clear()
        for reader in opened.values():
            await reader.close()


async def fetch(
    url: str,
    *,
    max_bytes: int,
    expected_sha256: str | None = None,
    settings: BlobSettings | None = None,
) -> bytes:
    """One-shot read of any reference; prefer a long-lived `BlobFetcher` in a loop."""
    async with BlobFetcher(settings) as fetcher:
        return await fetcher.fetch(url, max_bytes=max_bytes, expected_sha256=expected_sha256)
