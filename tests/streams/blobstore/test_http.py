"""`http(s)://` references: read-only, through the SSRF guard, with size and time limits,
against a loopback server (allowed explicitly: the guard refuses loopback by default)."""

from __future__ import annotations

import ipaddress

import pytest

from deploy.kafka_broker import free_port
from ocrflux.errors import FetchFailed, TooLarge
from streams.blobstore import HttpFetcher, UrlPolicy, UrlRefused
from tests.connectors.fixtures import BIG_BYTES, DOC_BYTES, LOOPBACK, HttpBlobs

ALLOW_LOOPBACK = UrlPolicy([ipaddress.ip_network(LOOPBACK)])


async def test_fetches_the_body(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher(ALLOW_LOOPBACK) as fetcher:
        assert await fetcher.get(f"{http_blobs.url}/doc", max_bytes=len(DOC_BYTES)) == DOC_BYTES
        assert await fetcher.get(f"{http_blobs.url}/redirect", max_bytes=10**6) == DOC_BYTES


async def test_404_is_fetch_failed(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher(ALLOW_LOOPBACK) as fetcher:
        with pytest.raises(FetchFailed, match="HTTP 404"):
            await fetcher.get(f"{http_blobs.url}/absent", max_bytes=100)


async def test_size_limit_by_header_and_by_counting(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher(ALLOW_LOOPBACK) as fetcher:
        with pytest.raises(TooLarge, match=str(BIG_BYTES)):
            await fetcher.get(f"{http_blobs.url}/big", max_bytes=BIG_BYTES - 1)
        with pytest.raises(TooLarge):
            await fetcher.get(f"{http_blobs.url}/chunked", max_bytes=BIG_BYTES - 1)
        assert len(await fetcher.get(f"{http_blobs.url}/chunked", max_bytes=BIG_BYTES)) == (
            BIG_BYTES
        )


async def test_time_limit(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher(ALLOW_LOOPBACK, timeout_s=0.3) as fetcher:
        with pytest.raises(FetchFailed, match="timed out"):
            await fetcher.get(f"{http_blobs.url}/stall", max_bytes=100)


async def test_connection_refused_and_wrong_scheme() -> None:
    async with HttpFetcher(ALLOW_LOOPBACK) as fetcher:
        with pytest.raises(FetchFailed, match="failed"):
            await fetcher.get(f"http://127.0.0.1:{free_port()}/x", max_bytes=100)
        with pytest.raises(FetchFailed, match="scheme"):
            await fetcher.get("ftp://example.invalid/x", max_bytes=100)


# --- the SSRF guard ----------------------------------------------------------------------------


async def test_loopback_is_refused_unless_allowed(http_blobs: HttpBlobs) -> None:
    async with HttpFetcher() as fetcher:
        with pytest.raises(UrlRefused, match="loopback") as refused:
            await fetcher.get(f"{http_blobs.url}/doc", max_bytes=10**6)
        assert refused.value.code == "url_refused"
        # a name is judged by what it resolves to, when the connection is made
        port = http_blobs.url.rsplit(":", 1)[1]
        with pytest.raises(UrlRefused, match=r"localhost resolves to .*loopback"):
            await fetcher.get(f"http://localhost:{port}/doc", max_bytes=10**6)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2/doc",  # loopback, but outside the allowed /32
        "http://10.0.0.1/doc",
        "http://169.254.169.254/latest/meta-data/",
        "http://[2002:7f00:2::]/doc",  # 6to4 form of 127.0.0.2
        "http://[::ffff:10.0.0.1]/doc",
        "file:///etc/passwd",
    ],
)
async def test_a_redirect_to_a_forbidden_address_is_refused(
    http_blobs: HttpBlobs, target: str
) -> None:
    async with HttpFetcher(ALLOW_LOOPBACK) as fetcher:
        with pytest.raises(UrlRefused):
            await fetcher.get(f"{http_blobs.url}/redirect?to={target}", max_bytes=10**6)
