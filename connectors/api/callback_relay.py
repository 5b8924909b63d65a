"""Kafka mode: a job's callback is sent by whichever API instance holds its result's partition.

The callback URL given at submission travels in the document request's metadata and comes back
on the result record. Every API instance of a deployment joins the consumer group
`<prefix>.api-callbacks` on the results topic; the instance that is assigned a result's
partition POSTs the job's final status to that URL, and its offset is committed only once the
delivery ended (delivered, or abandoned after its attempts). An instance that stops or dies
mid-delivery leaves the record uncommitted, so the partition's next owner sends it again: a
callback is delivered at least once, and a receiver may see a job's status twice.

The body is the job's status as `GET /v1/jobs/{id}` shows it, taken from the instance's job
store once its reader has applied the result (the same record this relay consumed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from connectors.api.callbacks import CallbackSender
from connectors.api.jobs import JobStore
from connectors.api.settings import ApiSettings
from schemas.records import ResultRecord, decode
from streams.runtime.runner import RoleRunner

__all__ = ["CALLBACK_METADATA_KEY", "CallbackRelay"]

_log = logging.getLogger(__name__)

#: The document request's metadata entry that carries the callback URL to the result (named so
#: that no producer's own metadata is taken for one; the URL is checked again when sent).
CALLBACK_METADATA_KEY = "ocrflux.api.callback_url"
#: A dead instance's partitions move to the others after this long.
_SESSION_TIMEOUT_S = 10.0
#: On a rebalance, deliveries still running after this long are left to the next owner.
_DRAIN_TIMEOUT_S = 10.0


class CallbackRelay:
    def __init__(
        self,
        settings: ApiSettings,
        callbacks: CallbackSender,
        catch_up: Callable[[float], Awaitable[object]],
        store: JobStore,
    ) -> None:
        """`catch_up(timeout_s)` returns once the instance's result reader has read what was on
        the results topic when it was called (or the timeout passed)."""
        self._callbacks = callbacks
        self._catch_up = catch_up
        self._store = store
        self._history_s = settings.ocrflux_job_history_s
        self._wait_s = settings.ocrflux_catch_up_timeout_s
        session_ms = int(_SESSION_TIMEOUT_S * 1000)
        # A slot may be busy for a whole delivery (every attempt timing out, every backoff
        # waited); the group must not take the instance for dead meanwhile.
        delivery_ms = int(callbacks.longest_delivery_s() * 1000)
        self._runner = RoleRunner(
            "callbacks",
            topic=settings.topics.results,
            group_id=f"{settings.ocrflux_topic_prefix}.api-callbacks",
            handler=self._handle,
            consumer_options={
                **settings.aiokafka_options(),
                "client_id": "ocrflux-api-callbacks",
                "fetch_max_bytes": settings.kafka_message_max_bytes,
                "max_partition_fetch_bytes": settings.kafka_message_max_bytes,
                "session_timeout_ms": session_ms,
                "heartbeat_interval_ms": session_ms // 3,
                "max_poll_interval_ms": delivery_ms + 60_000,
                "rebalance_timeout_ms": int(_DRAIN_TIMEOUT_S * 1000) + 10_000,
            },
            concurrency=settings.ocrflux_callback_concurrency,
            drain_timeout_s=_DRAIN_TIMEOUT_S,
        )

    async def run(self) -> None:
        await self._runner.run()

    def stop(self) -> None:
        self._runner.stop()

    async def _handle(self, message: ConsumerRecord[bytes, bytes]) -> None:
        if message.value is None:
            return
        try:
            record = decode(message.value)
        except ValidationError:
            return  # the API's reader logs undecodable records already
        if not isinstance(record, ResultRecord):
            return
        url = record.metadata.get(CALLBACK_METADATA_KEY)
        if not url or message.timestamp < (time.time() - self._history_s) * 1000:
            return
        # The reader may lag behind this consumer: once it has caught up, the job in the store
        # is the one this result finished (a result too large for Kafka is still being
        # fetched, hence the wait).
        await self._catch_up(self._wait_s)
        job = self._store.get(record.doc_id)
        if job is None or not await self._store.wait(job, self._wait_s):
            _log.warning("callback for job %s dropped: its result is not here", record.doc_id)
            return
        await self._callbacks.deliver(url, job)
