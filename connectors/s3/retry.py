"""Backoff after failed attempts, and waits that end early when the process is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib


class Backoff:
    """Delays of `initial`, 2x, 4x, ... capped at `maximum`; `reset()` after a success."""

    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.factor = factor
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor**self.failures)
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
