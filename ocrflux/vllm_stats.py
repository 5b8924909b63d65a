"""`ClientStats`: the counters of one `VllmClient` (ocrflux.vllm_client) and how they add up."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["ClientStats"]


@dataclass(slots=True)
class ClientStats:
    """Counters of one `VllmClient`, updated in place; read any time, or take a `snapshot()`.

    `requests_sent` counts HTTP attempts, so once nothing is in flight it equals
    `successes + answer_errors + transport_errors + backpressure + cancelled`, where
    `backpressure` counts the "not now" answers (429, 503, `retry_statuses`). Each transport
    error and each back-pressure answer is either retried or ends its `complete()` call:
    `transport_errors + backpressure == transport_retries + backpressure_retries + unavailable`.
    `reconnects` counts the transport retries sent at once on a new connection (a kept-alive
    one had been closed by the server); `backpressure_wait_s` is the time slept before
    back-pressure retries. Latency covers successful attempts only.
    """

    requests_sent: int = 0
    successes: int = 0
    answer_errors: int = 0
    transport_errors: int = 0
    transport_retries: int = 0
    reconnects: int = 0
    backpressure: int = 0
    backpressure_retries: int = 0
    backpressure_wait_s: float = 0.0
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
