"""`http(s)://` references, read-only, through the SSRF guard, with a size and a time limit."""

from __future__ import annotations

from streams.blobstore.base import DEFAULT_TIMEOUT_S, BlobReader, unsupported_scheme
from streams.blobstore.guarded_http import DEFAULT_CONNECT_TIMEOUT_S, GuardedHttp
from streams.blobstore.url_policy import UrlPolicy


class HttpFetcher(BlobReader):
    """GETs a URL that `policy` allows (default: public addresses only; a refusal is
    `UrlRefused`); any answer but 200 is `FetchFailed`, and so is running out of time."""

    schemes = ("http", "https")

    def __init__(
        self,
        policy: UrlPolicy | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.policy = policy or UrlPolicy()
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._http: GuardedHttp | None = None

    def _client(self) -> GuardedHttp:
        if self._http is None:  # opened on first use, inside the event loop that uses it
            self._http = GuardedHttp(self.policy, connect_timeout_s=self._connect_timeout_s)
        return self._http

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        if url.split(":", 1)[0].lower() not in self.schemes:
            raise unsupported_scheme(url, "the HTTP fetcher")
        return await self._client().get(url, max_bytes=max_bytes, timeout_s=self._timeout_s)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None
