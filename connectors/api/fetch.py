"""Fetching caller-given URLs without letting callers reach our own network (SSRF).

`/convert/url` downloads and callbacks POST to addresses a caller chose. Both go through
`GuardedHttp`, which:

- accepts only `http` and `https` (`file://`, `ftp://`, `gopher://`... are refused);
- checks every address a host name resolves to, and connects to exactly those addresses
  (`_GuardedResolver` is aiohttp's resolver, so there is no second lookup a DNS-rebinding
  server could answer differently); IP literals are checked before any connection;
- refuses loopback, private, shared (CGNAT), link-local, multicast, unspecified, reserved and
  cloud-metadata addresses, IPv4-mapped IPv6 forms included, unless an address lies in an
  allowed network (`OCRFLUX_FETCH_ALLOW`);
- follows redirects itself, at most `max_redirects`, checking each hop like the first;
- ignores proxy variables (`trust_env=False`) and limits bytes and time.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from connectors.api.errors import UrlRefused
from connectors.api.settings import IpNetwork
from ocrflux.errors import FetchFailed, TooLarge

__all__ = ["GuardedHttp", "UrlPolicy"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CHUNK_BYTES = 256 * 1024
#: Cloud metadata endpoints that a policy refuses even when their network is allowed.
METADATA_ADDRESSES: frozenset[IpAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Legacy numeric host forms (2130706433, 127.1, 0x7f.1) that resolvers map onto addresses.
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+))*\.?", re.IGNORECASE)


class UrlPolicy:
    """Which URLs and addresses may be reached."""

    def __init__(self, allow: Sequence[IpNetwork] = ()) -> None:
        self.allow = tuple(allow)

    def check_url(self, raw: str | URL) -> URL:
        """The URL, parsed, if its scheme and (literal) host may be fetched; else `UrlRefused`."""
        try:
            url = raw if isinstance(raw, URL) else URL(raw)
        except (ValueError, TypeError) as exc:
            raise UrlRefused(f"not a valid URL: {raw!s:.200}") from exc
        if url.scheme not in ("http", "https"):
            raise UrlRefused(f"URL scheme {url.scheme or '(none)'!r} is not allowed: use http(s)")
        if not url.host:
            raise UrlRefused("the URL has no host")
        if url.user or url.password:
            raise UrlRefused("URLs with credentials are not allowed")
        try:
            literal = ipaddress.ip_address(url.host.strip("[]"))
        except ValueError:
            if _NUMERIC_HOST.fullmatch(url.host):
                raise UrlRefused(f"{url.host} is a non-canonical numeric address") from None
            return url
        self.check_address(literal, url.host)
        return url

    def check_address(self, address: IpAddress, host: str) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address in METADATA_ADDRESSES:
            raise UrlRefused(f"{host} is a cloud metadata address")
        if any(address in network for network in self.allow):
            return
        why = _non_public(address)
        if why is not None:
            raise UrlRefused(f"{host} resolves to {address}, a {why} address")


def _non_public(address: IpAddress) -> str | None:
    for label, flag in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return label
    if not address.is_global:
        return "non-public"
    return None


class _GuardedResolver(AbstractResolver):
    """Resolves with the default resolver, then refuses the host if any address is refused."""

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._policy.check_address(ipaddress.ip_address(result["host"]), host)
        return results

    async def close(self) -> None:
        await self._inner.close()


class GuardedHttp:
    """An aiohttp session that only reaches what `policy` allows (see the module's docstring)."""

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        max_redirects: int = 5,
        connect_timeout_s: float = 10.0,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy
        self.max_redirects = max_redirects
        connector = aiohttp.TCPConnector(
            resolver=_GuardedResolver(policy, resolver), use_dns_cache=False, limit=64
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(sock_connect=connect_timeout_s),
        )

    async def close(self) -> None:
        await self._session.close()

    async def get(self, url: str, *, max_bytes: int, timeout_s: float) -> bytes:
        """The body of `url` (200 only), at most `max_bytes` (`TooLarge`), within `timeout_s`."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        current = self.policy.check_url(url)
        try:
            for _ in range(self.max_redirects + 1):
                async with self._session.get(
                    current, allow_redirects=False, timeout=timeout
                ) as response:
                    if response.status in _REDIRECTS:
                        current = self._next_hop(current, response)
                        continue
                    if response.status != 200:
                        raise FetchFailed(f"GET {url} answered HTTP {response.status}")
                    return await _read_limited(response, url, max_bytes)
        except TimeoutError as exc:
            raise FetchFailed(f"GET {url} took longer than {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise _translated(url, exc) from exc
        raise FetchFailed(f"GET {url}: more than {self.max_redirects} redirects")

    async def post_json(self, url: str, body: Any, *, timeout_s: float) -> int:
        """POST `body` as JSON (no redirects followed); returns the HTTP status."""
        checked = self.policy.check_url(url)
        try:
            async with self._session.post(
                checked,
                json=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                await response.read()
                return response.status
        except TimeoutError as exc:
            raise FetchFailed(f"POST {url} took longer than {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise _translated(url, exc) from exc

    def _next_hop(self, current: URL, response: aiohttp.ClientResponse) -> URL:
        location = response.headers.get("Location")
        if not location:
            raise FetchFailed(f"GET {current} redirected without a Location")
        try:
            target = current.join(URL(location))
        except ValueError as exc:
            raise UrlRefused(f"redirect to an invalid URL: {location:.200}") from exc
        return self.policy.check_url(target)


async def _read_limited(response: aiohttp.ClientResponse, url: str, max_bytes: int) -> bytes:
    announced = response.content_length
    if announced is not None and announced > max_bytes:
        raise TooLarge(f"{url} holds {announced} bytes, more than the limit of {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(f"{url} holds more than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _translated(url: str, exc: aiohttp.ClientError) -> FetchFailed:
    """A refusal raised inside the resolver, else a plain fetch failure."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UrlRefused):
            return cause
        cause = cause.__cause__ or cause.__context__
    return FetchFailed(f"{url}: {exc}")
