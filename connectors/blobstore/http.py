"""`http(s)://` references, read-only, with a size limit and a time limit."""

from __future__ import annotations

import aiohttp

from connectors.blobstore.base import BlobReader, unsupported_scheme
from ocrflux.errors import FetchFailed, TooLarge

_CHUNK_BYTES = 256 * 1024
#: A whole download may take this long by default: a 100 MB document at ~2 MB/s.
DEFAULT_TIMEOUT_S = 60.0
#: A server that does not accept a connection in this time is not coming.
DEFAULT_CONNECT_TIMEOUT_S = 10.0


class HttpFetcher(BlobReader):
    """GETs a URL; any answer but 200 is `FetchFailed`, and so is running out of time."""

    schemes = ("http", "https")

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session = session
        self._owns_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        if url.split(":", 1)[0].lower() not in self.schemes:
            raise unsupported_scheme(url, "the HTTP fetcher")
        try:
            async with self._client().get(url, timeout=self._timeout) as response:
                if response.status != 200:
                    raise FetchFailed(f"GET {url} answered HTTP {response.status}")
                announced = response.content_length
                if announced is not None and announced > max_bytes:
                    raise TooLarge(
                        f"{url} holds {announced} bytes, more than the limit of {max_bytes}"
                    )
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                    total += len(chunk)
                    if total > max_bytes:
                        raise TooLarge(f"{url} holds more than the limit of {max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError as exc:
            raise FetchFailed(f"GET {url} timed out") from exc
        except aiohttp.ClientError as exc:
            raise FetchFailed(f"GET {url} failed: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None
