"""`http(s)://` references: read-only, with size and time limits, against a loopback server."""

from __future__ import annotations

import pytest

from connectors.blobstore import HttpFetcher
from ocrflux.errors import FetchFailed, TooLarge
from tests.connectors.fixtures import BIG_BYTES, DOC_BYTES, HttpBlobs


async def test_fetches_the_body(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher() as fetcher:
        assert await fetcher.get(f"{http_blobs.url}/doc", max_bytes=len(DOC_BYTES)) == DOC_BYTES
        assert await fetcher.get(f"{http_blobs.url}/redirect", max_bytes=10**6) == DOC_BYTES


async def test_404_is_fetch_failed(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher() as fetcher:
        with pytest.raises(FetchFailed, match="HTTP 404"):
            await fetcher.get(f"{http_blobs.url}/absent", max_bytes=100)


async def test_size_limit_by_header_and_by_counting(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher() as fetcher:
        with pytest.raises(TooLarge, match=str(BIG_BYTES)):
            await fetcher.get(f"{http_blobs.url}/big", max_bytes=BIG_BYTES - 1)
        with pytest.raises(TooLarge):
            await fetcher.get(f"{http_blobs.url}/chunked", max_bytes=BIG_BYTES - 1)
        assert len(await fetcher.get(f"{http_blobs.url}/chunked", max_bytes=BIG_BYTES)) == (
            BIG_BYTES
        )


async def test_time_limit(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher(timeout_s=0.3) as fetcher:
        with pytest.raises(FetchFailed, match="timed out"):
            await fetcher.get(f"{http_blobs.url}/stall", max_bytes=100)


async def test_connection_refused_and_wrong_scheme() -> None:
    from deploy.kafka_broker import free_port

    async with HttpFetcher() as fetcher:
        with pytest.raises(FetchFailed, match="failed"):
            await fetcher.get(f"http://127.0.0.1:{free_port()}/x", max_bytes=100)
        with pytest.raises(FetchFailed, match="scheme"):
            await fetcher.get("ftp://example.invalid/x", max_bytes=100)
