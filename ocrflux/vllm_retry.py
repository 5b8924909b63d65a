"""When `VllmClient` sends a request again, and after how long. No I/O lives here.

- `RetryPolicy` holds the client's settings; each `complete()` call takes a fresh
  `CallRetries` from it, which keeps that call's count of waits and its share of the budget.
- A wait follows the server's `Retry-After` when a back-pressure answer named one (plus up to
  one back-off base of jitter, so that callers refused together do not return together), else
  the exponential back-off with full jitter of `ocrflux.backoff.full_jitter`. Every wait is cut
  to what is left of the budget, which runs from the call's first failure; once it is spent,
  `next_delay` says stop.
- A kept-alive connection the server closed while idle fails the next request sent on it
  (`is_stale_connection`); `reuse_tracer` tells the client which requests went out on a reused
  connection. Such a failure is retried once at once, on a new connection, outside the budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp

from ocrflux.backoff import full_jitter

__all__ = [
    "CallRetries",
    "ConnectionTrace",
    "RetryPolicy",
    "is_stale_connection",
    "reuse_tracer",
]

# What a request sent on a kept-alive connection that the server had closed ends in.
_STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    budget_s: float
    backoff_base_s: float
    backoff_cap_s: float
    rng: random.Random

    def new_call(self) -> CallRetries:
        return CallRetries(self)


class CallRetries:
    """The retry state of one `complete()` call."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self.first_failure: float | None = None
        self.waits = 0
        self._reconnected = False

    def elapsed(self, now: float) -> float:
        """Seconds since the call's first failure (0 before any)."""
        return 0.0 if self.first_failure is None else now - self.first_failure

    def next_delay(self, now: float, retry_after_s: float | None) -> float | None:
        """The wait before the next try after a failure at clock reading `now`, or None when
        the budget is spent. `retry_after_s` is what the server asked for, if it did."""
        policy = self._policy
        if self.first_failure is None:
            self.first_failure = now
        remaining = policy.budget_s - (now - self.first_failure)
        if remaining <= 0:
            return None
        if retry_after_s is None:
            delay = full_jitter(self.waits, policy.backoff_base_s, policy.backoff_cap_s, policy.rng)
        else:
            delay = retry_after_s + policy.rng.uniform(0.0, policy.backoff_base_s)
        self.waits += 1
        return min(delay, remaining)

    def reconnect_at_once(self, exc: BaseException, trace: ConnectionTrace) -> bool:
        """Whether to resend at once on a new connection: the first stale-connection failure."""
        if self._reconnected or not is_stale_connection(exc, trace):
            return False
        self._reconnected = True
        return True


class ConnectionTrace:
    """Per-request trace context: whether aiohttp sent it on a pooled (kept-alive) connection."""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


def reuse_tracer() -> aiohttp.TraceConfig:
    """A trace config that flags the `ConnectionTrace` passed as `trace_request_ctx`."""

    async def on_reuse(
        _session: aiohttp.ClientSession,
        context: SimpleNamespace,
        _params: aiohttp.TraceConnectionReuseconnParams,
    ) -> None:
        if isinstance(context.trace_request_ctx, ConnectionTrace):
            context.trace_request_ctx.reused = True

    tracer = aiohttp.TraceConfig()
    tracer.on_connection_reuseconn.append(on_reuse)
    return tracer


def is_stale_connection(exc: BaseException, trace: ConnectionTrace) -> bool:
    """Whether `exc` is what a kept-alive connection the server had closed fails with."""
    return trace.reused and isinstance(exc, _STALE_CONNECTION_ERRORS)
