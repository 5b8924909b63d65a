"""Backoff after failed attempts, and waits that end early when the process is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from prometheus_client import Counter

from connectors.s3.errors import AccessDenied
from ocrflux.backoff import full_jitter
from streams.kafka import KafkaClientError


class Backoff:
    """Delays drawn with full jitter (`ocrflux.backoff.full_jitter`) under a ceiling of
    `initial`, 2x, 4x, ... capped at `maximum`; `reset()` after a success."""

    def __init__(self, initial: float, maximum: float, *, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.failures = 0
        self._rng = rng

    def next_delay(self) -> float:
        delay = full_jitter(self.failures, self.initial, self.maximum, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `stop` is set, whichever comes first; True when stopping."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def back_off(
    exc: Exception, backoff: Backoff, errors: Counter, stop: asyncio.Event, log: logging.Logger
) -> bool:
    """Count and log one failed attempt (one line, naming the wait), then wait; True when asked
    to stop meanwhile. `errors` is a connector's error counter, labelled by kind."""
    delay = backoff.next_delay()
    kind = "access_denied" if isinstance(exc, AccessDenied) else "unavailable"
    if isinstance(exc, KafkaClientError):
        kind = "kafka"
    errors.labels(kind).inc()
    log.error("%s; retrying in %.3gs (failed attempts: %d)", exc, delay, backoff.failures)
    return await wait_or_stop(stop, delay)
