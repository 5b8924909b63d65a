"""Blob stores behind the claim-check pattern: a record too large for Kafka carries a reference
(`file://`, `s3://`, `http(s)://`) and the bytes live here. Also the SSRF guard of every fetch
of a caller-given URL, which the API uses too (this package sits below it).

    BlobReader           async get(url, *, max_bytes) -> bytes; close()
    └── BlobStore        + async put(data, name) -> url (content-addressed, idempotent)
        ├── FileBlobStore   file:// in a local folder (default)
        └── S3BlobStore     s3://bucket/key via aiobotocore
    HttpFetcher          http(s):// read-only through GuardedHttp, size and time limits
    BlobFetcher          dispatches a URL to the right reader by scheme
    UrlPolicy            which URLs and addresses may be fetched (`OCRFLUX_FETCH_ALLOW`)
    GuardedHttp          an HTTP client that applies a UrlPolicy after DNS and on redirects

Read errors are `ocrflux.errors.FetchFailed` (`UrlRefused` for a refused URL) and `TooLarge`;
write errors are `BlobStoreError`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from streams.blobstore.base import BlobReader, BlobStore, BlobStoreError
from streams.blobstore.factory import (
    BlobFetcher,
    BlobSettings,
    default_blob_dir,
    fetch,
    open_blob_store,
)
from streams.blobstore.file import FileBlobStore
from streams.blobstore.url_policy import UrlPolicy, UrlRefused

if TYPE_CHECKING:
    from streams.blobstore.guarded_http import GuardedHttp
    from streams.blobstore.http import HttpFetcher
    from streams.blobstore.s3 import S3BlobStore

# The aiohttp and aiobotocore backends load on first use: a command that only submits files
# (`ocrflux submit`) starts about 0.5 s sooner without them.
_LAZY = {
    "GuardedHttp": "streams.blobstore.guarded_http",
    "HttpFetcher": "streams.blobstore.http",
    "S3BlobStore": "streams.blobstore.s3",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlobFetcher",
    "BlobReader",
    "BlobSettings",
    "BlobStore",
    "BlobStoreError",
    "FileBlobStore",
    "GuardedHttp",
    "HttpFetcher",
    "S3BlobStore",
    "UrlPolicy",
    "UrlRefused",
    "default_blob_dir",
    "fetch",
    "open_blob_store",
]
