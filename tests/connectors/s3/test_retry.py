"""Backoff delays and stop-aware waits (no servers)."""

from __future__ import annotations

import asyncio
import random
import time

from connectors.s3.retry import Backoff, wait_or_stop
from ocrflux.backoff import full_jitter


def test_delays_are_jittered_under_a_doubling_ceiling_and_reset() -> None:
    backoff = Backoff(1.0, 5.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(5)]
    assert backoff.failures == 5
    for delay, ceiling in zip(delays, [1.0, 2.0, 4.0, 5.0, 5.0], strict=True):
        assert 0 <= delay <= ceiling
    backoff.reset()
    assert backoff.failures == 0
    assert 0 <= backoff.next_delay() <= 1.0


def test_delays_follow_the_shared_helper() -> None:
    backoff = Backoff(1.0, 5.0, rng=random.Random(3))
    expected = random.Random(3)
    for failures in range(6):
        assert backoff.next_delay() == full_jitter(failures, 1.0, 5.0, expected)


async def test_a_wait_ends_early_when_stopping() -> None:
    stop = asyncio.Event()
    assert not await wait_or_stop(stop, 0.01)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    assert await wait_or_stop(stop, 30)
    assert time.monotonic() - started < 5
    assert await wait_or_stop(stop, 30)
