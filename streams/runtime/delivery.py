"""What handling one record caused on Kafka, held until every part of it is acknowledged.

`Producer.send` adds each record it hands to the producer to the `Deliveries` of the record being
handled (a context variable the runner sets around each handler call). The runner marks a record
finished only after `settle()` returns, and `settle()` returns only once every send has been
acknowledged: a failed delivery (a batch that expired while the partition's leader was
unreachable, a send refused while the broker was down) is sent again after a back-off, for as
long as it takes. The record stays unfinished meanwhile, so its offset is never committed past a
result that did not land; if the worker stops or loses the partition first, the record is left
to the partition's next owner, whose handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiokafka.errors import KafkaError

from ocrflux.backoff import full_jitter
from streams.runtime.log_limit import OUTAGE_LOGGER

_log = logging.getLogger(OUTAGE_LOGGER)

#: Sends again a record whose delivery failed; returns the new delivery future.
Resend = Callable[[], Awaitable["asyncio.Future[Any]"]]

#: Back-off between rounds of sending failed deliveries again: full jitter up to a ceiling
#: that doubles from the first to the last value.
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 10.0


@dataclass
class Sent:
    """One record handed to the producer: its latest delivery future, and how to send it again."""

    future: asyncio.Future[Any]
    resend: Resend
    #: Longer than the producer takes to report a failure: a future still pending then is
    #: stuck (its producer died) and counts as failed.
    timeout_s: float


class Deliveries:
    """The sends made while handling one record (see the module docstring).

    Only sends not yet acknowledged are kept: each holds its record's bytes (in `resend`), and
    one record may cause thousands of sends (a 1,000-page document's page tasks, each with its
    PNG), so keeping every send until `settle()` made a worker's memory grow with the document.
    """

    def __init__(self) -> None:
        self._sent: dict[int, Sent] = {}
        self._added = 0

    def __len__(self) -> int:
        """Sends not yet acknowledged (failed ones included, until `settle()` takes them)."""
        return len(self._sent)

    def add(self, future: asyncio.Future[Any], resend: Resend, timeout_s: float) -> Sent:
        sent = Sent(future, resend, timeout_s)
        number, self._added = self._added, self._added + 1
        self._sent[number] = sent
        future.add_done_callback(partial(self._acknowledged, number))
        return sent

    def _acknowledged(self, number: int, future: asyncio.Future[Any]) -> None:
        # A failed send stays for `settle()` to send again; once `settle()` took the sends,
        # `number` is no longer here and this does nothing.
        if _failure(future) is None:
            self._sent.pop(number, None)

    async def settle(self, *, retry_first_s: float = RETRY_FIRST_S) -> int:
        """Wait until every send is acknowledged, sending failed ones again; returns how many
        sends had to be repeated. Only cancellation ends it early."""
        pending, self._sent = list(self._sent.values()), {}
        repeated = rounds = 0
        while pending:
            await asyncio.wait(
                [sent.future for sent in pending], timeout=max(s.timeout_s for s in pending)
            )
            pending = [sent for sent in pending if _failure(sent.future) is not None]
            if not pending:
                break
            _log.warning(
                "%d record(s) not acknowledged by Kafka (%r); sending them again",
                len(pending),
                _failure(pending[0].future),
            )
            await asyncio.sleep(backoff_s(rounds, retry_first_s))  # back-off, then send again
            rounds += 1
            for sent in pending:
                sent.future = await resend_once(sent.resend)
                repeated += 1
        return repeated


def backoff_s(retries: int, first_s: float = RETRY_FIRST_S) -> float:
    """The Kafka runtime's wait before retry number `retries` (0-based): `full_jitter` under a
    ceiling that doubles from `first_s` up to `RETRY_CAP_S`."""
    return full_jitter(retries, first_s, RETRY_CAP_S)


async def resend_once(resend: Resend) -> asyncio.Future[Any]:
    """`resend()`, with a refusal to take the record turned into a failed future."""
    try:
        return await resend()
    except KafkaError as exc:
        return failed_future(exc)


def failed_future(exc: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def _failure(future: asyncio.Future[Any]) -> BaseException | None:
    if not future.done():
        return TimeoutError("no answer from the producer")
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception()


#: The `Deliveries` of the record this task is handling; None outside the runner's handlers.
CURRENT: ContextVar[Deliveries | None] = ContextVar("ocrflux_deliveries", default=None)
