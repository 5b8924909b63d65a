"""Blob stores behind the claim-check pattern: a record too large for Kafka carries a reference
(`file://`, `s3://`, `http(s)://`) and the bytes live here.

    BlobReader           async get(url, *, max_bytes) -> bytes; close()
    └── BlobStore        + async put(data, name) -> url (content-addressed, idempotent)
        ├── FileBlobStore   file:// in a local folder (default)
        └── S3BlobStore     s3://bucket/key via aiobotocore
    HttpFetcher          http(s):// read-only, size and time limits
    BlobFetcher          dispatches a URL to the right reader by scheme

Read errors are `ocrflux.errors.FetchFailed` and `TooLarge`; write errors are `BlobStoreError`.
"""

from connectors.blobstore.base import BlobReader, BlobStore, BlobStoreError
from connectors.blobstore.factory import (
    BlobFetcher,
    BlobSettings,
    default_blob_dir,
    fetch,
    open_blob_store,
)
from connectors.blobstore.file import FileBlobStore
from connectors.blobstore.http import HttpFetcher
from connectors.blobstore.s3 import S3BlobStore

__all__ = [
    "BlobFetcher",
    "BlobReader",
    "BlobSettings",
    "BlobStore",
    "BlobStoreError",
    "FileBlobStore",
    "HttpFetcher",
    "S3BlobStore",
    "default_blob_dir",
    "fetch",
    "open_blob_store",
]
