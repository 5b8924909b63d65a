"""An HTTP client that reaches only what a `UrlPolicy` allows: the one way this project fetches
or POSTs to a URL someone else chose (`/convert/url`, callbacks, `http(s)://` references).

`GuardedHttp`:
- checks the URL first (`UrlPolicy.check_url`: scheme, credentials, IP literals);
- checks every address a host name resolves to, and connects to exactly those addresses
  (`_GuardedResolver` is aiohttp's resolver, so there is no second lookup a DNS-rebinding
  server could answer differently);
- follows redirects itself, at most `max_redirects`, checking each hop like the first;
- ignores proxy variables (`trust_env=False`) and limits bytes and time.

A refusal is `UrlRefused`; any other failure is `FetchFailed`, a body over the limit `TooLarge`.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from ocrflux.errors import FetchFailed, TooLarge
from streams.blobstore.url_policy import UrlPolicy, UrlRefused

__all__ = ["GuardedHttp"]

_CHUNK_BYTES = 256 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: A server that does not accept a connection in this time is not coming.
DEFAULT_CONNECT_TIMEOUT_S = 10.0


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
    """An aiohttp session that only reaches what `policy` allows (see the module's docstring).
    Create it inside the event loop that uses it."""

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        max_redirects: int = 5,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
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
            raise FetchFailed(f"GET {url} timed out after {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise _translated("GET", url, exc) from exc
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
            raise FetchFailed(f"POST {url} timed out after {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise _translated("POST", url, exc) from exc

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


def _translated(method: str, url: str, exc: aiohttp.ClientError) -> FetchFailed:
    """A refusal raised inside the resolver, else a plain fetch failure."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UrlRefused):
            return cause
        cause = cause.__cause__ or cause.__context__
    return FetchFailed(f"{method} {url} failed: {exc}")
