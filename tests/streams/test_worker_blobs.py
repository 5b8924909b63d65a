"""The worker's claim-check reads (`WorkerBlobs`, what the split role fetches documents with)
go through the SSRF policy: an `http(s)://` reference to a loopback server is refused unless
`OCRFLUX_FETCH_ALLOW` lets the worker reach it, and a redirect is judged like the first hop."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.blobstore import UrlRefused
from streams.settings import WorkerSettings
from streams.worker import WorkerBlobs
from tests.connectors.fixtures import DOC_BYTES, LOOPBACK, HttpBlobs


def _settings(tmp_path: Path) -> WorkerSettings:
    # No broker is contacted: the address only satisfies the settings.
    return WorkerSettings(kafka_bootstrap_servers="127.0.0.1:9", ocrflux_blob_dir=tmp_path)


async def test_worker_refuses_loopback_references_by_default(
    tmp_path: Path, http_blobs: HttpBlobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OCRFLUX_FETCH_ALLOW", raising=False)
    blobs = WorkerBlobs(_settings(tmp_path))
    try:
        with pytest.raises(UrlRefused, match=r"127\.0\.0\.1 is a loopback address") as refused:
            await blobs.fetch(f"{http_blobs.url}/doc", max_bytes=10**6)
        assert refused.value.code == "url_refused"
    finally:
        await blobs.aclose()


async def test_worker_reaches_allowed_networks_and_judges_every_redirect(
    tmp_path: Path, http_blobs: HttpBlobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCRFLUX_FETCH_ALLOW", LOOPBACK)
    blobs = WorkerBlobs(_settings(tmp_path))
    try:
        assert await blobs.fetch(f"{http_blobs.url}/redirect", max_bytes=10**6) == DOC_BYTES
        for target in ("http://169.254.169.254/latest/meta-data/", "http://[2002:a00:1::]/"):
            with pytest.raises(UrlRefused):
                await blobs.fetch(f"{http_blobs.url}/redirect?to={target}", max_bytes=10**6)
    finally:
        await blobs.aclose()
