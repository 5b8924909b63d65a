"""Protection: API keys, SSRF refusals (after DNS and on every redirect), upload and page
limits; none of the refused requests reaches vLLM."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from connectors.api.errors import UrlRefused
from connectors.api.fetch import GuardedHttp, UrlPolicy
from tests.api.fixtures import ApiProcess, Site
from tests.scenarios import pdf_with_lines, twelve_page_report

KEY = "test-key-1"
AUTH = {"X-API-Key": KEY}
MAX_BYTES = 200_000
REFUSED_URLS = [
    "http://127.0.0.1/document.pdf",
    "http://10.0.0.1/document.pdf",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/document.pdf",
    "file:///etc/passwd",
    "http://localhost/document.pdf",  # a name that resolves to loopback
    "http://[::ffff:127.0.0.1]/document.pdf",
    "http://2130706433/document.pdf",
    "ftp://example.com/document.pdf",
]


@pytest.fixture
def guarded(
    api_servers: Callable[..., ApiProcess], web_site: Callable[[str], Site], ocrflux_server: Any
) -> tuple[ApiProcess, Site]:
    # The redirecting site is on 127.0.0.2, the only address allowed: every target below is
    # refused on its own, whether named first or reached through a redirect.
    site = web_site("127.0.0.2")
    site.files["document.pdf"] = pdf_with_lines([["allowed document"]])
    api = api_servers(
        VLLM_URL=ocrflux_server.url,
        API_KEYS=f"other-key,{KEY}",
        OCRFLUX_FETCH_ALLOW="127.0.0.2/32",
        MAX_FILE_BYTES=str(MAX_BYTES),
        MAX_PAGES="3",
    )
    return api, site


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _post_url(http: aiohttp.ClientSession, api: ApiProcess, url: str) -> tuple[int, Any]:
    async with http.post(f"{api.url}/convert/url", json={"url": url}, headers=AUTH) as response:
        return response.status, await response.json()


async def test_refused_urls_and_redirects_never_reach_vllm(
    guarded: tuple[ApiProcess, Site], http: aiohttp.ClientSession, ocrflux_server: Any
) -> None:
    api, site = guarded
    for url in REFUSED_URLS:
        status, body = await _post_url(http, api, url)
        assert status == 400, (url, body)
        assert body["status"] == "error" and body["error_code"] == "url_refused", (url, body)
        assert body["detail"]
        status, body = await _post_url(http, api, f"{site.url}/redirect?to={url}")
        assert status == 400, (url, body)
        assert body["error_code"] == "url_refused", (url, body)
    # jobs and callbacks go through the same guard
    async with http.post(
        f"{api.url}/v1/jobs", json={"url": "http://10.0.0.1/x.pdf"}, headers=AUTH
    ) as response:
        assert response.status == 400
    form = aiohttp.FormData()
    form.add_field("file", pdf_with_lines([["callback"]]), filename="doc.pdf")
    form.add_field("callback_url", "http://169.254.169.254/hook")
    async with http.post(f"{api.url}/v1/jobs", data=form, headers=AUTH) as response:
        assert response.status == 400
        assert (await response.json())["error_code"] == "url_refused"
    assert ocrflux_server.stats()["requests_total"] == 0
    # the allowed site itself is reachable, so the refusals above were the guard's doing
    status, body = await _post_url(http, api, f"{site.url}/files/document.pdf")
    assert status == 200 and body["status"] == "success", body


async def test_keys_limits_and_types(
    guarded: tuple[ApiProcess, Site], http: aiohttp.ClientSession, ocrflux_server: Any
) -> None:
    api, _ = guarded
    small = pdf_with_lines([["small"]])

    def form(data: bytes, name: str = "doc.pdf") -> aiohttp.FormData:
        fields = aiohttp.FormData()
        fields.add_field("file", data, filename=name)
        return fields

    cases: list[tuple[dict[str, str], aiohttp.FormData, int, str]] = [
        ({}, form(small), 401, "unauthorized"),
        ({"X-API-Key": "wrong"}, form(small), 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, form(small), 401, "unauthorized"),
        (AUTH, form(b"%PDF-1.4\n" + b"0" * (MAX_BYTES + 1)), 413, "too_large"),
        (AUTH, form(twelve_page_report().data), 422, "too_many_pages"),
        (AUTH, form(small, "doc.docx"), 400, "unsupported_type"),
        (AUTH, form(b"PK\x03\x04 a zip, named .pdf"), 400, "unsupported_type"),
        (AUTH, form(b""), 400, "empty"),
    ]
    for headers, data, status, code in cases:
        async with http.post(f"{api.url}/convert/file", data=data, headers=headers) as response:
            body = await response.json()
            assert (response.status, body["error_code"]) == (status, code), body
            assert body["status"] == "error" and body["detail"]
            if status == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/models", "/metrics", "/v1/jobs/abc"):
        async with http.get(api.url + path) as response:
            assert response.status == 401, path
    assert ocrflux_server.stats()["requests_total"] == 0
    # probes and docs need no key; a right key in either header works
    for path in ("/health", "/ready", "/docs", "/openapi.json"):
        async with http.get(api.url + path) as response:
            assert response.status == 200, path
    bearer = {"Authorization": f"Bearer {KEY}"}
    async with http.post(f"{api.url}/convert/file", data=form(small), headers=bearer) as response:
        assert response.status == 200
        assert (await response.json())["status"] == "success"


class _Rebinding(AbstractResolver):
    """Answers a public address on the first lookup and a private one after: a DNS-rebinding
    attacker's server."""

    def __init__(self) -> None:
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        address = "93.184.216.34" if self.lookups == 1 else "10.0.0.1"
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


async def test_the_address_checked_is_the_address_connected_to() -> None:
    resolver = _Rebinding()
    http = GuardedHttp(UrlPolicy(), resolver=resolver, connect_timeout_s=0.5)
    try:
        resolver.lookups = 1  # skip the "public" answer: the connection's own lookup is checked
        with pytest.raises(UrlRefused, match=r"10\.0\.0\.1"):
            await http.get("http://rebind.example/doc.pdf", max_bytes=100, timeout_s=5)
        assert resolver.lookups == 2  # one lookup per connection, and that one was refused
    finally:
        await http.close()


def test_policy_allow_list_and_metadata() -> None:
    policy = UrlPolicy([ipaddress.ip_network("10.1.0.0/16")])
    policy.check_url("http://10.1.2.3/doc.pdf")
    with pytest.raises(UrlRefused):
        policy.check_url("http://10.2.0.1/doc.pdf")
    with pytest.raises(UrlRefused, match="metadata"):
        UrlPolicy([ipaddress.ip_network("169.254.0.0/16")]).check_url("http://169.254.169.254/")
    for url in (
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
    ):
        with pytest.raises(UrlRefused):
            policy.check_url(url)
    assert str(policy.check_url("https://example.com/a.pdf")) == "https://example.com/a.pdf"
