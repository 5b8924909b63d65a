"""Routing state for `VllmClient`: per-server health, in-flight slots and a FIFO wait queue.

Also `server_urls`, the deployment guide's VLLM_URL/VLLM_PORT convention.

No I/O lives here: `ServerPool` only decides which server a request goes to and makes callers
wait when every eligible server is full. The HTTP side is `ocrflux.vllm_client`.

Routing rule (`ServerPool.acquire`):
1. Eligible servers are the healthy ones; when none is healthy, every server is eligible, so a
   total outage turns into retries (bounded by the client's budget) rather than a deadlock.
2. Among eligible servers with a free slot, prefer one the caller did not just fail on (no
   answer, or a "not now" answer such as 429), then the fewest requests in flight, then (all
   servers unhealthy) the one that failed longest ago, then the one chosen least recently, so
   that ties rotate.
3. When no eligible server has a free slot the caller joins a FIFO queue; each released slot or
   health change hands slots to waiters in arrival order. A new caller never overtakes a waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from yarl import URL


@dataclass(slots=True)
class ServerState:
    url: str
    inflight: int = 0
    healthy: bool = True
    last_failure: float | None = None
    """Clock reading of the last transport error, 5xx "not now" or failed probe; None if none."""
    last_ok: float | None = None
    """Clock reading of the last completion or /health that answered 200; None if none did."""
    last_picked: int = -1
    """Sequence number of the last time routing chose this server (ties go to the oldest)."""


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[ServerState]
    avoid: Collection[str]


class ServerPool:
    """Slots and health of a fixed set of servers; see the module docstring for the rule."""

    def __init__(
        self, urls: Sequence[str], max_inflight_per_server: int, inflight: dict[str, int]
    ) -> None:
        if not urls:
            raise ValueError("at least one server is needed")
        if max_inflight_per_server < 1:
            raise ValueError("max_inflight_per_server must be at least 1")
        self.servers = [ServerState(url) for url in urls]
        self.max_inflight = max_inflight_per_server
        self._inflight = inflight  # the live `ClientStats.inflight` view, kept in step here
        for server in self.servers:
            inflight[server.url] = 0
        self._waiters: deque[_Waiter] = deque()
        self._picks = 0
        self._closed_error: Callable[[], BaseException] | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    def health(self) -> dict[str, bool]:
        return {s.url: s.healthy for s in self.servers}

    def answered_since(self, since: float) -> bool:
        """Whether a healthy server answered 200 at or after clock reading `since`."""
        return any(s.healthy and s.last_ok is not None and s.last_ok >= since for s in self.servers)

    def preferred_order(self) -> list[ServerState]:
        """Healthy servers in configuration order, then the rest, least recently failed first."""
        return sorted(
            self.servers,
            key=lambda s: (not s.healthy, -1.0 if s.last_failure is None else s.last_failure),
        )

    # --- slots -------------------------------------------------------------------------------

    async def acquire(self, avoid: Collection[str] = ()) -> ServerState:
        """Take a slot on the best eligible server, waiting in FIFO order while all are full."""
        if self._closed_error is not None:
            raise self._closed_error()
        if not self._waiters:
            server = self._pick(avoid)
            if server is not None:
                self._take(server)
                return server
        waiter = _Waiter(asyncio.get_running_loop().create_future(), avoid)
        self._waiters.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # The slot was handed over just as we were cancelled: give it back.
                self.release(waiter.future.result())
            else:
                self._discard(waiter)
            raise

    def release(self, server: ServerState) -> None:
        server.inflight -= 1
        self._inflight[server.url] = server.inflight
        self._dispatch()

    def close(self, error: Callable[[], BaseException]) -> None:
        """Fail every waiter, and every later `acquire`, with a fresh `error()`."""
        self._closed_error = error
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error())

    # --- health ------------------------------------------------------------------------------

    def mark_healthy(self, server: ServerState, now: float) -> bool:
        """Mark `server` healthy as it answered at clock reading `now`; True if that is a change."""
        server.last_ok = now
        if server.healthy:
            return False
        server.healthy = True
        self._dispatch()
        return True

    def mark_unhealthy(self, server: ServerState, now: float) -> bool:
        """Mark `server` unhealthy as of clock reading `now`; True if that is a change."""
        server.last_failure = now
        if not server.healthy:
            return False
        server.healthy = False
        # When the last healthy server goes, every server becomes eligible.
        self._dispatch()
        return True

    # --- internals -----------------------------------------------------------------------------

    def _pick(self, avoid: Collection[str]) -> ServerState | None:
        any_healthy = any(s.healthy for s in self.servers)
        best: ServerState | None = None
        best_key: tuple[bool, int, float, int] | None = None
        for server in self.servers:
            if (any_healthy and not server.healthy) or server.inflight >= self.max_inflight:
                continue
            failed = -1.0 if server.healthy or server.last_failure is None else server.last_failure
            key = (server.url in avoid, server.inflight, failed, server.last_picked)
            if best_key is None or key < best_key:
                best, best_key = server, key
        if best is not None:
            self._picks += 1
            best.last_picked = self._picks
        return best

    def _take(self, server: ServerState) -> None:
        server.inflight += 1
        self._inflight[server.url] = server.inflight

    def _dispatch(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            server = self._pick(head.avoid)
            if server is None:
                return
            self._waiters.popleft()
            self._take(server)
            head.future.set_result(server)

    def _discard(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)


def server_urls(vllm_url: str, vllm_port: int = 8003) -> list[str]:
    """Base URLs from the deployment guide's `VLLM_URL` and `VLLM_PORT`.

    `http://localhost` + 8003 -> `http://localhost:8003`. `vllm_url` may be a comma-separated
    list; an entry with its own port keeps it, an entry without a scheme gets `http://`, and
    trailing slashes and a trailing `/v1` are dropped.
    """
    urls: list[str] = []
    for entry in vllm_url.split(","):
        entry = entry.strip().rstrip("/")
        if not entry:
            continue
        if entry.endswith("/v1"):
            entry = entry[: -len("/v1")].rstrip("/")
        if "://" not in entry:
            entry = "http://" + entry
        url = URL(entry)
        if url.explicit_port is None:
            url = url.with_port(vllm_port)
        base = check_base_url(str(url))
        if base not in urls:
            urls.append(base)
    if not urls:
        raise ValueError(f"no vLLM server URL in {vllm_url!r}")
    return urls


def check_base_url(raw: str) -> str:
    """`raw` without trailing slashes, if it is an http(s) URL with a host; else ValueError."""
    url = URL(raw.rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not an http(s) base URL: {raw!r}")
    if url.query_string or url.fragment:
        raise ValueError(f"a base URL takes no query or fragment: {raw!r}")
    return str(url).rstrip("/")
