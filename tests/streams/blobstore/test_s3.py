"""The `s3://` blob store against a real S3 server (moto, its own process)."""

from __future__ import annotations

import pytest

from ocrflux.errors import FetchFailed, TooLarge
from streams.blobstore import BlobFetcher, S3BlobStore, open_blob_store
from tests.connectors.fixtures import S3Endpoint


async def test_put_then_get_with_explicit_settings(moto_s3: S3Endpoint, s3_bucket: str) -> None:
    async with S3BlobStore(s3_bucket, "docs/", **moto_s3.client_args()) as store:
        url = await store.put(b"%PDF-1.4 s3 bytes", "in.pdf")
        assert url.startswith(f"s3://{s3_bucket}/docs/")
        assert url.endswith("/in.pdf")
        assert await store.get(url, max_bytes=1000) == b"%PDF-1.4 s3 bytes"
        assert await store.put(b"%PDF-1.4 s3 bytes", "in.pdf") == url


async def test_limits_and_missing_objects(moto_s3: S3Endpoint, s3_bucket: str) -> None:
    async with S3BlobStore(s3_bucket, **moto_s3.client_args()) as store:
        url = await store.put(b"x" * 100, "hundred")
        with pytest.raises(TooLarge):
            await store.get(url, max_bytes=99)
        with pytest.raises(FetchFailed, match="no such blob"):
            await store.get(f"s3://{s3_bucket}/absent", max_bytes=10)
        with pytest.raises(FetchFailed, match="no such blob"):
            await store.get("s3://no-such-bucket-here/key", max_bytes=10)
        with pytest.raises(FetchFailed, match="bucket and a key"):
            await store.get(f"s3://{s3_bucket}", max_bytes=10)


async def test_settings_from_the_usual_aws_variables(s3_env: S3Endpoint, s3_bucket: str) -> None:
    store = open_blob_store(f"s3://{s3_bucket}/claims")
    assert isinstance(store, S3BlobStore)
    async with store:
        url = await store.put(b"from env", "e.bin")
    assert url.startswith(f"s3://{s3_bucket}/claims/")
    async with BlobFetcher() as fetcher:
        assert await fetcher.fetch(url, max_bytes=100) == b"from env"


async def test_unreachable_endpoint_is_fetch_failed(s3_bucket: str) -> None:
    from deploy.kafka_broker import free_port

    dead = S3Endpoint(f"http://127.0.0.1:{free_port()}")
    async with S3BlobStore(**dead.client_args()) as store:
        with pytest.raises(FetchFailed, match="cannot read"):
            await store.get(f"s3://{s3_bucket}/k", max_bytes=10)
