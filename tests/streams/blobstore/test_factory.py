"""Choosing a backend by scheme: `open_blob_store`, `BlobFetcher` and `fetch`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ocrflux.errors import FetchFailed
from streams.blobstore import (
    BlobFetcher,
    BlobSettings,
    FileBlobStore,
    S3BlobStore,
    UrlRefused,
    default_blob_dir,
    fetch,
    open_blob_store,
)
from tests.connectors.fixtures import DOC_BYTES, LOOPBACK, HttpBlobs


def test_default_folder_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OCRFLUX_BLOB_DIR", raising=False)
    monkeypatch.setenv("OCRFLUX_HOME", str(tmp_path / "home"))
    assert default_blob_dir() == (tmp_path / "home" / "blobs").resolve()
    assert BlobSettings().base_url == (tmp_path / "home" / "blobs").resolve().as_uri()
    monkeypatch.setenv("OCRFLUX_BLOB_DIR", str(tmp_path / "elsewhere"))
    store = open_blob_store()
    assert isinstance(store, FileBlobStore)
    assert store.root == (tmp_path / "elsewhere").resolve()


def test_open_blob_store_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(tmp_path.as_uri()), FileBlobStore)
    s3 = open_blob_store("s3://bucket/some/prefix")
    assert isinstance(s3, S3BlobStore)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix/")
    with pytest.raises(ValueError, match="read-only"):
        open_blob_store("https://example.invalid/blobs")
    with pytest.raises(ValueError, match="unsupported"):
        open_blob_store("ftp://example.invalid/blobs")


async def test_fetch_dispatches_and_checks_the_digest(
    tmp_path: Path, http_blobs: HttpBlobs
) -> None:
    settings = BlobSettings(ocrflux_blob_dir=tmp_path, ocrflux_fetch_allow=LOOPBACK)
    url = await FileBlobStore(tmp_path).put(b"on disk", "d.bin")
    digest = hashlib.sha256(b"on disk").hexdigest()
    assert await fetch(url, max_bytes=100, expected_sha256=digest, settings=settings) == b"on disk"
    with pytest.raises(FetchFailed, match="does not hold the announced content"):
        await fetch(url, max_bytes=100, expected_sha256="0" * 64, settings=settings)
    async with BlobFetcher(settings) as fetcher:
        assert await fetcher.fetch(f"{http_blobs.url}/doc", max_bytes=10**6) == DOC_BYTES
        with pytest.raises(FetchFailed, match="scheme"):
            await fetcher.fetch("gopher://x/y", max_bytes=10)


async def test_http_references_go_through_the_ssrf_policy(
    tmp_path: Path, http_blobs: HttpBlobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetcher every reader of references uses (worker, SDK, sink, API in kafka mode)
    refuses loopback by default, and `OCRFLUX_FETCH_ALLOW` opens it."""
    monkeypatch.delenv("OCRFLUX_FETCH_ALLOW", raising=False)
    async with BlobFetcher(BlobSettings(ocrflux_blob_dir=tmp_path)) as fetcher:
        with pytest.raises(UrlRefused, match="loopback"):
            await fetcher.fetch(f"{http_blobs.url}/doc", max_bytes=10**6)
    monkeypatch.setenv("OCRFLUX_FETCH_ALLOW", f"10.9.0.0/16, {LOOPBACK}")
    async with BlobFetcher(BlobSettings(ocrflux_blob_dir=tmp_path)) as fetcher:
        assert await fetcher.fetch(f"{http_blobs.url}/doc", max_bytes=10**6) == DOC_BYTES
        with pytest.raises(UrlRefused, match="private"):
            await fetcher.fetch(f"{http_blobs.url}/redirect?to=http://10.8.0.1/", max_bytes=99)


def test_fetch_allow_must_be_networks() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        BlobSettings(ocrflux_fetch_allow="10.0.0.0/8,not-a-network")
