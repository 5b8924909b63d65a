"""The production `ChatCompleter`: vLLM's OpenAI-compatible server over aiohttp.

`VllmClient` sends one request per `complete()` call (protocol section 4) to one of several
servers, sharing a single `aiohttp.ClientSession`. Routing, per-server in-flight bounds and
back-pressure live in `ocrflux.vllm_routing`, the request body and answer parsing in
`ocrflux.vllm_wire`; this module does the HTTP side and the error policy:

- Transport errors (connection refused/reset, server disconnected, timeouts, DNS failures,
  garbled HTTP) are not answers. The server is marked unhealthy and the request is sent again,
  preferring another server, after an exponential back-off with jitter, until
  `transport_retry_budget_s` has passed since the request's first transport error; then
  `ModelUnavailable` is raised from the last error.
- Every HTTP answer that is not a usable completion raises `ChatAnswerError(message, status)`,
  which the caller counts as a used attempt. That retry loop, and the temperature ramp of
  section 4, belong to the caller, not here.
- 503 is an answer like any other non-200 status (`ChatAnswerError`): vLLM itself sends it
  rarely, and the protocol counts a non-200 status as a failed attempt. Deployments with a proxy
  in front, whose 502/503/504 mean "no model reached", can pass `retry_statuses` to treat those
  like transport errors instead.

Nothing here reads the environment; `server_urls` turns the deployment guide's
`VLLM_URL`/`VLLM_PORT` values (read at the entry point) into base URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

import aiohttp

from ocrflux.chat import ChatAnswerError, ChatRequest, ChatResponse
from ocrflux.errors import ModelUnavailable
from ocrflux.vllm_routing import (
    ServerPool,
    ServerState,
    backoff_delay,
    check_base_url,
    server_urls,
)
from ocrflux.vllm_wire import encode_request_body, error_snippet, parse_completion

__all__ = ["DEFAULT_MODEL", "ClientStats", "VllmClient", "server_urls"]

_log = logging.getLogger(__name__)

DEFAULT_MODEL = "ChatDOC/OCRFlux-3B"

# Errors that mean "no answer came back", as opposed to an answer we cannot use.
# aiohttp.ClientError covers refused/reset connections, ServerDisconnectedError, DNS failures
# (ClientConnectorDNSError), truncated bodies (ClientPayloadError) and unparseable HTTP
# (ClientResponseError from the protocol parser); TimeoutError covers the total timeout.
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientError, TimeoutError, OSError)
_ANSWER_OR_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (ChatAnswerError, *_TRANSPORT_ERRORS)
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# Extra pooled connections beyond the completion slots, so that health probes and /v1/models
# never wait behind a full pool of long-running completions.
_CONTROL_CONNECTIONS = 2


@dataclass(slots=True)
class ClientStats:
    """Counters of one `VllmClient`, updated in place; read any time, or take a `snapshot()`.

    `requests_sent` counts HTTP attempts, so once nothing is in flight it equals
    `successes + answer_errors + transport_errors + cancelled`; and
    `transport_errors == transport_retries + unavailable` (each transport error is either
    retried or ends its `complete()` call). Latency covers successful attempts only.
    """

    requests_sent: int = 0
    successes: int = 0
    answer_errors: int = 0
    transport_errors: int = 0
    transport_retries: int = 0
    unavailable: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_sum_s: float = 0.0
    latency_count: int = 0
    latency_max_s: float = 0.0
    inflight: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> ClientStats:
        """An independent copy (the `inflight` dict included)."""
        return replace(self, inflight=dict(self.inflight))


class VllmClient:
    """`ChatCompleter` for one or more vLLM OpenAI-compatible servers.

    Use as `async with VllmClient([...]) as client:` or call `start()`/`close()`; the session
    is also created lazily on first use. `health_interval_s` starts a background prober that
    runs `probe()` at that interval; without it, a server marked unhealthy after a transport
    error comes back only through `probe()`, a successful request, or when every server is down
    (then all servers are tried, least recently failed first).

    Arguments:
        servers: base URLs (`http://host:port`, no `/v1`); see `server_urls`.
        model: the served model name sent in every request (`MODEL_NAME`).
        max_inflight_per_server: completions in flight per server; further callers wait, in
            arrival order. The connection pool is sized to all servers' slots plus a few
            control connections for probes and `models()`.
        request_timeout_s: total time for one HTTP attempt; running out is a transport error.
        max_tokens: cap sent when the request sets none; None sends no `max_tokens`.
        transport_retry_budget_s: how long a `complete()` call keeps retrying transport errors,
            counted from its first one (later attempts and slot waits included); 0 = no retry.
        health_interval_s: run `probe()` in the background at this interval; None = never.
        probe_timeout_s: total time for one `/health` or `/v1/models` request.
        backoff_base_s, backoff_cap_s: the retry delay before retry n is uniform in
            [c/2, c] with c = min(cap, base * 2**n): 0.125-0.25 s, 0.25-0.5 s, ... 5-10 s.
        retry_statuses: HTTP statuses to treat as transport errors (e.g. {502, 503, 504} behind
            a proxy). Default none: every non-200 answer is a `ChatAnswerError`.
        sleep, clock, rng: drive the back-off and its budget (tests pass fakes; `clock` also
            times attempts). The background prober always waits with `asyncio.sleep`.

    One event loop only; not thread-safe.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        model: str = DEFAULT_MODEL,
        max_inflight_per_server: int = 64,
        request_timeout_s: float = 300.0,
        max_tokens: int | None = 8192,
        transport_retry_budget_s: float = 120.0,
        health_interval_s: float | None = None,
        probe_timeout_s: float = 5.0,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 10.0,
        retry_statuses: Collection[int] = (),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        urls = [check_base_url(s) for s in servers]
        if len(set(urls)) != len(urls):
            raise ValueError(f"duplicate server URLs: {urls}")
        for name, value in (
            ("request_timeout_s", request_timeout_s),
            ("probe_timeout_s", probe_timeout_s),
            ("backoff_base_s", backoff_base_s),
            ("backoff_cap_s", backoff_cap_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if transport_retry_budget_s < 0:
            raise ValueError("transport_retry_budget_s must not be negative")
        if health_interval_s is not None and not health_interval_s > 0:
            raise ValueError("health_interval_s must be positive or None")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError("max_tokens must be at least 1 or None")

        self.model = model
        self.max_tokens = max_tokens
        self.stats = ClientStats()
        self._pool = ServerPool(urls, max_inflight_per_server, self.stats.inflight)
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._probe_timeout = aiohttp.ClientTimeout(total=probe_timeout_s)
        self._budget_s = transport_retry_budget_s
        self._health_interval_s = health_interval_s
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._retry_statuses = frozenset(retry_statuses)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._prober: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(s.url for s in self._pool.servers)

    @property
    def waiting(self) -> int:
        """Callers waiting for a free slot (every eligible server is at its in-flight bound)."""
        return self._pool.waiting

    async def start(self) -> None:
        self._ensure_started()

    async def close(self) -> None:
        """Stop the prober, fail waiting callers with `ModelUnavailable`, close the session."""
        if self._closed:
            return
        self._closed = True
        self._pool.close(_closed_error)
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _ensure_started(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the vLLM client is closed")
        if self._session is None:
            slots = len(self._pool.servers) * self._pool.max_inflight
            connector = aiohttp.TCPConnector(
                limit=slots + len(self._pool.servers) + _CONTROL_CONNECTIONS,
                limit_per_host=0,  # the per-server slots already bound each server
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        if self._health_interval_s is not None and self._prober is None:
            self._prober = asyncio.get_running_loop().create_task(
                self._probe_forever(self._health_interval_s), name="vllm-health-prober"
            )
        return self._session

    # --- completions -----------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        session = self._ensure_started()
        max_tokens = request.max_tokens if request.max_tokens is not None else self.max_tokens
        body = encode_request_body(self.model, request, max_tokens)
        avoid: tuple[str, ...] = ()
        retries = 0
        first_failure: float | None = None
        while True:
            server = await self._pool.acquire(avoid)
            if self._closed:  # closed while this caller was being handed a slot
                self._pool.release(server)
                raise _closed_error()
            try:
                response = await self._send(session, server, body)
            except _ANSWER_OR_TRANSPORT_ERRORS as exc:
                if isinstance(exc, ChatAnswerError) and exc.status not in self._retry_statuses:
                    self.stats.answer_errors += 1
                    self._pool.release(server)
                    raise
                cause = exc
            except BaseException:
                self._pool.release(server)
                raise
            else:
                self._record_success(server, response)
                self._pool.release(server)
                return response

            # No answer: mark the server before its slot goes back, so waiters avoid it.
            self.stats.transport_errors += 1
            now = self._clock()
            if self._pool.mark_unhealthy(server, now):
                _log.warning("vLLM server %s marked unhealthy: %r", server.url, cause)
            self._pool.release(server)
            if first_failure is None:
                first_failure = now
            remaining = self._budget_s - (now - first_failure)
            if self._closed:
                self.stats.unavailable += 1
                raise _closed_error() from cause
            if remaining <= 0:
                self.stats.unavailable += 1
                raise ModelUnavailable(
                    f"no vLLM server answered for {now - first_failure:.1f}s "
                    f"({retries + 1} transport errors); last on {server.url}: {cause!r}"
                ) from cause
            delay = min(
                backoff_delay(retries, self._backoff_base_s, self._backoff_cap_s, self._rng),
                remaining,
            )
            retries += 1
            self.stats.transport_retries += 1
            avoid = (server.url,)
            await self._sleep(delay)

    async def _send(
        self, session: aiohttp.ClientSession, server: ServerState, body: bytes
    ) -> ChatResponse:
        """One HTTP attempt; transport errors propagate, unusable answers raise ChatAnswerError."""
        self.stats.requests_sent += 1
        started = self._clock()
        try:
            async with session.post(
                server.url + "/v1/chat/completions",
                data=body,
                headers=_JSON_HEADERS,
                timeout=self._request_timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        return parse_completion(status, raw, self._clock() - started)

    def _record_success(self, server: ServerState, response: ChatResponse) -> None:
        stats = self.stats
        stats.successes += 1
        stats.prompt_tokens += response.prompt_tokens
        stats.completion_tokens += response.completion_tokens
        stats.latency_sum_s += response.latency_s
        stats.latency_count += 1
        stats.latency_max_s = max(stats.latency_max_s, response.latency_s)
        if self._pool.mark_healthy(server):
            _log.info("vLLM server %s is healthy again (request succeeded)", server.url)

    # --- health and models -----------------------------------------------------------------

    def health(self) -> dict[str, bool]:
        """The current health view (no I/O)."""
        return self._pool.health()

    async def probe(self) -> dict[str, bool]:
        """GET `{base}/health` on every server at once; 200 marks healthy, anything else not."""
        session = self._ensure_started()
        servers = self._pool.servers
        results = await asyncio.gather(*(self._probe_one(session, s) for s in servers))
        return {s.url: ok for s, ok in zip(servers, results, strict=True)}

    async def _probe_one(self, session: aiohttp.ClientSession, server: ServerState) -> bool:
        try:
            async with session.get(
                server.url + "/health", timeout=self._probe_timeout, allow_redirects=False
            ) as resp:
                await resp.read()
                ok = resp.status == 200
                why: object = f"HTTP {resp.status}"
        except _TRANSPORT_ERRORS as exc:
            ok, why = False, exc
        if ok:
            if self._pool.mark_healthy(server):
                _log.info("vLLM server %s is healthy again (probe)", server.url)
        elif self._pool.mark_unhealthy(server, self._clock()):
            _log.warning("vLLM server %s marked unhealthy by probe: %r", server.url, why)
        return ok

    async def _probe_forever(self, interval_s: float) -> None:
        while True:
            try:
                await self.probe()
            except Exception:  # keep probing whatever one round did
                _log.exception("vLLM health probe failed")
            await asyncio.sleep(interval_s)

    async def models(self) -> dict[str, Any]:
        """GET `/v1/models` from the first healthy server (others on transport errors)."""
        session = self._ensure_started()
        last_exc: BaseException | None = None
        for server in self._pool.preferred_order():
            try:
                async with session.get(
                    server.url + "/v1/models", timeout=self._probe_timeout, allow_redirects=False
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
            except _TRANSPORT_ERRORS as exc:
                last_exc = exc
                self._pool.mark_unhealthy(server, self._clock())
                continue
            if status != 200:
                raise ChatAnswerError(
                    f"GET /v1/models: HTTP {status}: {error_snippet(raw)}", status
                )
            try:
                payload = json.loads(raw)
            except ValueError as exc:
                raise ChatAnswerError("GET /v1/models: body is not JSON", status) from exc
            if not isinstance(payload, dict):
                raise ChatAnswerError("GET /v1/models: body is not a JSON object", status)
            return payload
        raise ModelUnavailable(
            f"no vLLM server answered GET /v1/models: {last_exc!r}"
        ) from last_exc


def _closed_error() -> ModelUnavailable:
    return ModelUnavailable("the vLLM client is closed")
