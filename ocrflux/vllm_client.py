"""The production `ChatCompleter`: vLLM's OpenAI-compatible server over aiohttp.

`VllmClient` sends one request per `complete()` call (protocol section 4) to one of several
servers, sharing one pooled `aiohttp.ClientSession`. Routing, per-server in-flight bounds and
slot queueing live in `ocrflux.vllm_routing`, the request body and answer parsing in
`ocrflux.vllm_wire`, retry timing in `ocrflux.vllm_retry`, the counters in `ocrflux.vllm_stats`;
this module does the HTTP side and the error policy:

- Transport errors (connection refused/reset, server disconnected, timeouts, DNS failures,
  garbled HTTP) are not answers. The server is marked unhealthy and the request is sent again,
  preferring another server, after an exponential back-off with jitter.
- One exception: a kept-alive connection the server closed while idle (vLLM closes idle
  keep-alives) fails the request that reuses it with ServerDisconnectedError/ClientOSError.
  The first such error of a call is retried at once on a new connection, with no back-off and
  no health mark; any later one is an ordinary transport error.
- Back-pressure is not an answer either: 429 (Too Many Requests), 503 (Service Unavailable) and
  `retry_statuses` (default 502 and 504, which vLLM never sends itself: a proxy in front could
  not reach it) mean "not now". The same request (same temperature: the caller's attempt is not
  spent) is sent again, preferring another server, after the wait the answer's `Retry-After`
  asks for (seconds or an HTTP date, capped at `RETRY_AFTER_CAP_S`, plus up to
  `backoff_base_s` of jitter so that refused callers do not return together), or after the
  exponential back-off when it names none. A 429 server is busy, not broken: it stays healthy
  for routing. A 503/502/504 server cannot serve now: it is marked unhealthy like a transport
  error, so other callers go elsewhere until a probe or a completion finds it well.
- Transport errors and back-pressure share one bounded wait: once `transport_retry_budget_s`
  has passed since the call's first one, `ModelUnavailable` is raised from the last of them
  (the last wait is cut to the budget, so it may come sooner than a `Retry-After` asked).
  Never `ChatAnswerError`: the caller must not spend attempts on a model it did not reach.
- Every other HTTP answer that is not a usable completion raises `ChatAnswerError(message,
  status)`, which the caller counts as a used attempt. That retry loop, and the temperature ramp
  of section 4, belong to the caller, not here.
- `wait_until_healthy` lets a caller that got `ModelUnavailable` wait for any server's `/health`
  to answer 200 before it carries on.

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
from types import TracebackType
from typing import Any, Self

import aiohttp

from ocrflux.chat import ChatAnswerError, ChatRequest, ChatResponse
from ocrflux.errors import ModelUnavailable
from ocrflux.vllm_retry import ConnectionTrace, RetryPolicy, reuse_tracer
from ocrflux.vllm_routing import ServerPool, ServerState, check_base_url, server_urls
from ocrflux.vllm_stats import ClientStats
from ocrflux.vllm_wire import (
    ServerBusy,
    encode_request_body,
    error_snippet,
    parse_completion,
    parse_retry_after,
)

__all__ = ["DEFAULT_MODEL", "ClientStats", "VllmClient", "server_urls"]

_log = logging.getLogger(__name__)

DEFAULT_MODEL = "ChatDOC/OCRFlux-3B"

# Errors that mean "no answer came back", as opposed to an answer we cannot use.
# aiohttp.ClientError covers refused/reset connections, ServerDisconnectedError, DNS failures
# (ClientConnectorDNSError), truncated bodies (ClientPayloadError) and unparseable HTTP
# (ClientResponseError from the protocol parser); TimeoutError covers the total timeout.
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientError, TimeoutError, OSError)
# 429 says "busy", not "broken": the server stays healthy for routing.
_TOO_MANY_REQUESTS = 429
_SERVICE_UNAVAILABLE = 503
# Proxy answers that mean "vLLM was not reached" (vLLM never sends them itself).
_DEFAULT_RETRY_STATUSES = (502, 504)
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# Extra pooled connections beyond the completion slots, so that health probes and /v1/models
# never wait behind a full pool of long-running completions.
_CONTROL_CONNECTIONS = 2


class VllmClient:
    """`ChatCompleter` for one or more vLLM OpenAI-compatible servers.

    Use as `async with VllmClient([...]) as client:` or call `start()`/`close()`; the session
    is also created lazily on first use. `health_interval_s` starts a background prober that
    runs `probe()` at that interval; without it, a server marked unhealthy after a transport
    error or a 503 comes back only through `probe()`, a successful request, or when every
    server is down (then all servers are tried, least recently failed first).

    Arguments:
        servers: base URLs (`http://host:port`, no `/v1`); see `server_urls`.
        model: the served model name sent in every request (`MODEL_NAME`).
        max_inflight_per_server: completions in flight per server; further callers wait, in
            arrival order. The connection pool is sized to all servers' slots plus a few
            control connections for probes and `models()`.
        request_timeout_s: total time for one HTTP attempt; running out is a transport error.
        max_tokens: cap sent when the request sets none; None sends no `max_tokens`.
        transport_retry_budget_s: how long a `complete()` call keeps retrying transport errors
            and back-pressure answers, counted from its first one (later attempts, waits and
            slot waits included); 0 = no retry.
        health_interval_s: run `probe()` in the background at this interval; None = never.
        probe_timeout_s: total time for one `/health` or `/v1/models` request.
        backoff_base_s, backoff_cap_s: the retry delay before retry n is uniform in
            [0, c] with c = min(cap, base * 2**n) (`ocrflux.backoff.full_jitter`): up to
            0.25 s, 0.5 s, ... 10 s.
        retry_statuses: HTTP statuses that, besides 429 and 503, mean "vLLM not reached, try
            again" (back-pressure, see the module docstring); default 502 and 504, the answers
            of a proxy in front. Every other non-200 answer is a `ChatAnswerError`.
        sleep, clock, rng: drive the back-off and its budget (tests pass fakes; `clock` also
            times attempts). The background prober and `wait_until_healthy` always wait with
            `asyncio.sleep`.

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
        retry_statuses: Collection[int] = _DEFAULT_RETRY_STATUSES,
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
        if any(not 400 <= status <= 599 for status in retry_statuses):
            raise ValueError(f"retry_statuses must be HTTP error statuses, got {retry_statuses}")

        self.model = model
        self.max_tokens = max_tokens
        self.stats = ClientStats()
        self._pool = ServerPool(urls, max_inflight_per_server, self.stats.inflight)
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._probe_timeout = aiohttp.ClientTimeout(total=probe_timeout_s)
        self._retry = RetryPolicy(
            transport_retry_budget_s,
            backoff_base_s,
            backoff_cap_s,
            rng if rng is not None else random.Random(),
        )
        self._health_interval_s = health_interval_s
        self._busy_statuses = frozenset((_TOO_MANY_REQUESTS, _SERVICE_UNAVAILABLE, *retry_statuses))
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
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
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None

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
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, trace_configs=[reuse_tracer()]
            )
        if self._health_interval_s is not None and self._prober is None:
            self._prober = asyncio.get_running_loop().create_task(
                self._probe_forever(self._health_interval_s), name="vllm-health-prober"
            )
        return self._session

    def _fresh_session(self) -> aiohttp.ClientSession:
        """A session that opens a new connection for every request (and closes it after)."""
        if self._fresh is None:
            self._fresh = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, limit=0), trust_env=False
            )
        return self._fresh

    # --- completions -----------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        session = self._ensure_started()
        max_tokens = request.max_tokens if request.max_tokens is not None else self.max_tokens
        body = encode_request_body(self.model, request, max_tokens)
        stats = self.stats
        retries = self._retry.new_call()
        avoid: tuple[str, ...] = ()
        fresh = False
        while True:
            server = await self._pool.acquire(avoid)
            if self._closed:  # closed while this caller was being handed a slot
                self._pool.release(server)
                raise _closed_error()
            trace = ConnectionTrace()
            try:
                response = await self._send(
                    self._fresh_session() if fresh else session, server, body, trace
                )
            except ServerBusy as exc:
                stats.backpressure += 1
                cause: Exception = exc
                retry_after = exc.retry_after_s
                if exc.status != _TOO_MANY_REQUESTS:  # busy is not broken; the rest is
                    self._mark_unhealthy(server, exc)
            except ChatAnswerError:
                stats.answer_errors += 1
                self._pool.release(server)
                raise
            except _TRANSPORT_ERRORS as exc:
                stats.transport_errors += 1
                if retries.reconnect_at_once(exc, trace):
                    stats.transport_retries += 1
                    stats.reconnects += 1
                    self._pool.release(server)
                    fresh = True
                    continue
                cause, retry_after = exc, None
                self._mark_unhealthy(server, exc)
            except BaseException:
                self._pool.release(server)
                raise
            else:
                self._record_success(server, response)
                self._pool.release(server)
                if max_tokens is not None and response.completion_tokens > max_tokens:
                    # A server that ignores the cap (or a proxy that rewrote the request) can
                    # answer megabytes; such an answer is a bad one, never a page.
                    stats.answer_errors += 1
                    raise ChatAnswerError(
                        f"{server.url} answered {response.completion_tokens} completion tokens, "
                        f"over the request's max_tokens={max_tokens}",
                        status=200,
                    )
                return response

            # No answer to count. A health mark came before the slot goes back, so that
            # waiters already avoid the server.
            self._pool.release(server)
            fresh = False
            now = self._clock()
            delay = None if self._closed else retries.next_delay(now, retry_after)
            if delay is None:
                stats.unavailable += 1
                if self._closed:
                    raise _closed_error() from cause
                raise ModelUnavailable(
                    f"no vLLM server took the request for {retries.elapsed(now):.1f}s "
                    f"({retries.waits + 1} tries unanswered or refused as busy); last from "
                    f"{server.url}: {cause!r}"
                ) from cause
            if isinstance(cause, ServerBusy):
                stats.backpressure_retries += 1
                stats.backpressure_wait_s += delay
            else:
                stats.transport_retries += 1
            avoid = (server.url,)
            await self._sleep(delay)

    def _mark_unhealthy(self, server: ServerState, cause: Exception) -> None:
        if self._pool.mark_unhealthy(server, self._clock()):
            _log.warning("vLLM server %s marked unhealthy: %r", server.url, cause)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        server: ServerState,
        body: bytes,
        trace: ConnectionTrace,
    ) -> ChatResponse:
        """One HTTP attempt; transport errors propagate, "not now" answers raise `ServerBusy`,
        unusable answers `ChatAnswerError`."""
        self.stats.requests_sent += 1
        started = self._clock()
        try:
            async with session.post(
                server.url + "/v1/chat/completions",
                data=body,
                headers=_JSON_HEADERS,
                timeout=self._request_timeout,
                allow_redirects=False,
                trace_request_ctx=trace,
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                raw = await resp.read()
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        if status in self._busy_statuses:
            raise ServerBusy(
                f"HTTP {status}: {error_snippet(raw)}",
                status,
                parse_retry_after(retry_after, time.time()),
            )
        return parse_completion(status, raw, self._clock() - started)

    def _record_success(self, server: ServerState, response: ChatResponse) -> None:
        stats = self.stats
        stats.successes += 1
        stats.prompt_tokens += response.prompt_tokens
        stats.completion_tokens += response.completion_tokens
        stats.latency_sum_s += response.latency_s
        stats.latency_count += 1
        stats.latency_max_s = max(stats.latency_max_s, response.latency_s)
        if self._pool.mark_healthy(server, self._clock()):
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
            if self._pool.mark_healthy(server, self._clock()):
                _log.info("vLLM server %s is healthy again (probe)", server.url)
        elif self._pool.mark_unhealthy(server, self._clock()):
            _log.warning("vLLM server %s marked unhealthy by probe: %r", server.url, why)
        return ok

    async def wait_until_healthy(self, poll_s: float) -> None:
        """Return once a server can take requests: at once if one answered 200 (a completion or
        `/health`) within the last `poll_s` and is still healthy, else when a `probe()` finds one,
        probing every `poll_s` until then. Wrap it in a timeout to bound the wait; raises
        `ModelUnavailable` if the client is closed meanwhile.
        """
        if not poll_s > 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        while True:
            if self._closed:
                raise _closed_error()
            if self._pool.answered_since(self._clock() - poll_s):
                return
            try:
                health = await self.probe()
            except RuntimeError as exc:  # the session was closed under the probe
                if self._closed:
                    raise _closed_error() from exc
                raise
            if any(health.values()):
                return
            await asyncio.sleep(poll_s)

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
