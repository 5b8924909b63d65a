"""While no model server answers, the stream processor waits instead of degrading.

In the direct driver a model outage longer than the client's retry budget fails the document
(`vllm_unavailable`), because a caller is waiting for an answer. In the stream processor Kafka
is the buffer: a page or merge task whose engine raises `ModelUnavailable` closes the gate and
waits until the engine's model answers its health check again, then tries again, without
spending an attempt. While the gate is closed the recognize role takes no new pages (its runner
holds fetching), so the backlog stays on Kafka. Only a page the model answers badly, after its
attempts, becomes a fallback page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ocrflux.engines.base import Engine
from ocrflux.errors import ModelUnavailable

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a closed gate asks the model servers' `/health` whether they are back.
HEALTH_POLL_S = 2.0


class ModelGate:
    def __init__(self, poll_s: float = HEALTH_POLL_S) -> None:
        self._poll_s = poll_s
        self._open = asyncio.Event()
        self._open.set()
        self._reopener: asyncio.Task[None] | None = None
        self.outages = 0

    @property
    def closed(self) -> bool:
        return not self._open.is_set()

    async def run(self, engine: Engine, task: Callable[[], Awaitable[T]]) -> T:
        """`task()`, again after each outage of `engine`'s model, until it completes."""
        while True:
            await self._open.wait()
            try:
                return await task()
            except ModelUnavailable as exc:
                self._close(engine, exc)

    def _close(self, engine: Engine, exc: ModelUnavailable) -> None:
        if self.closed:
            return
        self.outages += 1
        _log.warning("no model server answers (%s); work waits until one does", exc.message)
        self._open.clear()
        self._reopener = asyncio.create_task(self._reopen(engine), name="model-gate")

    async def _reopen(self, engine: Engine) -> None:
        closed_at = time.monotonic()
        try:
            await engine.wait_until_available(self._poll_s)
        except Exception:  # whatever the probe did, try the model again rather than wait forever
            _log.exception("waiting for the model failed; trying it again")
            await asyncio.sleep(self._poll_s)  # do not spin on a failing probe
        _log.warning(
            "a model server answers again after %.1f s; work resumes", time.monotonic() - closed_at
        )
        self._open.set()

    async def aclose(self) -> None:
        if self._reopener is not None:
            self._reopener.cancel()
            await asyncio.gather(self._reopener, return_exceptions=True)
