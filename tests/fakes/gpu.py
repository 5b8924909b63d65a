"""A simulated GPU for the OCRFlux-3B test double: `capacity` slots served FIFO, each request
holding one for its service time, with time-weighted occupancy statistics.

The ideal throughput is `capacity / service_time.mean` requests a second; benchmarks compare a
client's throughput with it and read `all_busy_share` (the share of the active window during
which every slot was busy) to see whether the client keeps the GPU fed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ServiceTime:
    """How long a request holds its slot: uniform in `mean * (1 ± jitter)`, seeded."""

    mean: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mean < 0 or not 0.0 <= self.jitter <= 1.0:
            raise ValueError("service time needs mean >= 0 and 0 <= jitter <= 1")
        self._rng = random.Random(self.seed)

    @classmethod
    def parse(cls, value: float | dict[str, Any] | ServiceTime) -> ServiceTime:
        """A number (constant seconds), `{"mean", "jitter", "seed"}`, or a ServiceTime."""
        if isinstance(value, ServiceTime):
            return cls(value.mean, value.jitter, value.seed)
        if isinstance(value, dict):
            return cls(
                float(value.get("mean", 0.0)),
                float(value.get("jitter", 0.0)),
                int(value.get("seed", 0)),
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("service_time is a number of seconds or {mean, jitter, seed}")
        return cls(float(value))

    def draw(self) -> float:
        if self.jitter == 0.0:
            return self.mean
        return self.mean * (1.0 + self._rng.uniform(-self.jitter, self.jitter))

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "jitter": self.jitter, "seed": self.seed}


class Gpu:
    """FIFO slots with occupancy accounting; `on_change` is called after every state change."""

    def __init__(
        self, capacity: int, service_time: ServiceTime, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.service_time = service_time
        self.on_change: Callable[[], None] = lambda: None
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = 0
        self.paused = False
        self.reset_stats()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def reset_stats(self) -> None:
        now = self._clock()
        self._last = now
        self._window_start: float | None = now if self.in_flight or self._waiters else None
        self._window_end: float | None = None
        self.max_in_flight = self.in_flight
        self.max_queued = len(self._waiters)
        self.busy_slot_seconds = 0.0
        self.all_busy_seconds = 0.0
        self.served = 0

    def set_capacity(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._account()
        self.capacity = capacity
        self._grant()
        self.on_change()

    def set_paused(self, paused: bool) -> None:
        """A paused GPU starts nothing: new requests queue until it resumes (FIFO)."""
        self._account()
        self.paused = paused
        self._grant()
        self.on_change()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Wait for a slot (FIFO) and hold it; yields the drawn service time in seconds."""
        await self._acquire()
        try:
            yield self.service_time.draw()
        finally:
            self._release()

    async def _acquire(self) -> None:
        self._account()
        if self._window_start is None:
            self._window_start = self._clock()
        if self.in_flight < self.capacity and not self._waiters and not self.paused:
            self.in_flight += 1
            self._changed()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.max_queued = max(self.max_queued, len(self._waiters))
        self.on_change()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was granted just as we were cancelled
            else:
                self._waiters.remove(waiter)
                self.on_change()
            raise

    def _release(self) -> None:
        self._account()
        self.in_flight -= 1
        self.served += 1
        self._grant()
        if not self.in_flight and not self._waiters:
            self._window_end = self._clock()
        self.on_change()

    def _grant(self) -> None:
        while self._waiters and self.in_flight < self.capacity and not self.paused:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _changed(self) -> None:
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._window_end = None
        self.on_change()

    def _account(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        self.busy_slot_seconds += self.in_flight * elapsed
        if self.in_flight >= self.capacity:
            self.all_busy_seconds += elapsed

    def stats(self) -> dict[str, Any]:
        self._account()
        if self._window_start is None:
            window = 0.0
        else:
            end = self._window_end if self._window_end is not None else self._clock()
            window = max(0.0, end - self._window_start)
        mean = self.service_time.mean
        return {
            "capacity": self.capacity,
            "paused": self.paused,
            "service_time": self.service_time.to_json(),
            "ideal_throughput": self.capacity / mean if mean > 0 else None,
            "in_flight": self.in_flight,
            "queued": self.queued,
            "max_in_flight": self.max_in_flight,
            "max_queued": self.max_queued,
            "served": self.served,
            "busy_slot_seconds": self.busy_slot_seconds,
            "all_busy_seconds": self.all_busy_seconds,
            "window_seconds": window,
            "all_busy_share": self.all_busy_seconds / window if window > 0 else 0.0,
            "utilisation": (
                self.busy_slot_seconds / (self.capacity * window) if window > 0 else 0.0
            ),
        }
