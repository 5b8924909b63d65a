"""Backoff delays and stop-aware waits (no servers)."""

from __future__ import annotations

import asyncio
import time

from connectors.s3.retry import Backoff, wait_or_stop


def test_delays_double_up_to_the_maximum_and_reset() -> None:
    backoff = Backoff(1.0, 5.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


async def test_a_wait_ends_early_when_stopping() -> None:
    stop = asyncio.Event()
    assert not await wait_or_stop(stop, 0.01)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    assert await wait_or_stop(stop, 30)
    assert time.monotonic() - started < 5
    assert await wait_or_stop(stop, 30)
