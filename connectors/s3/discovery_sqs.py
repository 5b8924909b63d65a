"""Discovery by S3 event notifications delivered to an SQS queue.

Configure the bucket to send `s3:ObjectCreated:*` events to the queue (directly, or through an
SNS topic: the envelope is unwrapped). A message is deleted only after every object it names was
handled for good (submitted and committed, already in the ledger, or skipped by a rule); others
come back after the visibility timeout and are checked against the ledger again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aiobotocore.session import get_session
from botocore.exceptions import NoRegionError

from connectors.s3.discovery import Batch
from connectors.s3.errors import FatalError
from connectors.s3.metrics import SourceMetrics
from connectors.s3.objects import (
    LIBRARY_ERRORS,
    ObjectInfo,
    client_config,
    normalize_etag,
    translate,
)

log = logging.getLogger(__name__)

#: SQS answers a receive with at most this many messages.
_MAX_MESSAGES = 10
#: The longest long-poll SQS allows.
_MAX_WAIT_S = 20


@dataclass
class ParsedMessage:
    """The created objects one message announces; `s3_event` is False for anything else
    (a test event, a removal, a foreign payload)."""

    objects: list[ObjectInfo] = field(default_factory=list)
    s3_event: bool = True


def parse_message(body: str, bucket: str) -> ParsedMessage:
    """The `ObjectCreated` records of `bucket` in one SQS message body (S3 event JSON, maybe in
    an SNS envelope). Raises ValueError for a body that is not JSON."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if isinstance(payload, dict) and payload.get("Type") == "Notification":
        return parse_message(str(payload.get("Message", "")), bucket)
    if not isinstance(payload, dict) or not isinstance(payload.get("Records"), list):
        return ParsedMessage(s3_event=False)  # s3:TestEvent and anything else
    parsed = ParsedMessage()
    for record in payload["Records"]:
        if not isinstance(record, dict):
            continue
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3") or {}
        if (s3.get("bucket") or {}).get("name") != bucket:
            continue
        obj = s3.get("object") or {}
        if "key" not in obj:
            continue
        parsed.objects.append(
            ObjectInfo(
                bucket=bucket,
                key=unquote_plus(str(obj["key"])),
                etag=normalize_etag(obj.get("eTag") or obj.get("etag")),
                size=int(obj.get("size") or 0),
            )
        )
    return parsed


class SqsDiscovery:
    def __init__(
        self,
        client_args: dict[str, Any],
        queue_url: str,
        bucket: str,
        *,
        wait_s: float,
        visibility_timeout_s: int,
        stop: asyncio.Event,
        metrics: SourceMetrics,
    ) -> None:
        self._client_args = client_args
        self.queue_url = queue_url
        self.bucket = bucket
        self.wait_s = int(min(_MAX_WAIT_S, max(1, round(wait_s))))
        self.visibility_timeout_s = visibility_timeout_s
        self.stop = stop
        self.metrics = metrics
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def _sqs(self) -> Any:
        if self._client is None:
            try:
                self._client = await self._stack.enter_async_context(
                    get_session().create_client("sqs", config=client_config(), **self._client_args)
                )
            except NoRegionError as exc:
                raise FatalError(
                    "SQS needs a region: set AWS_REGION (or AWS_DEFAULT_REGION) or --region"
                ) from exc
        return self._client

    async def batches(self) -> AsyncGenerator[Batch, None]:
        while not self.stop.is_set():
            messages = await self._receive()
            if not messages:
                continue
            objects: list[ObjectInfo] = []
            owners: list[tuple[dict[str, Any], list[int]]] = []
            for message in messages:
                indices = []
                try:
                    parsed = parse_message(message.get("Body", ""), self.bucket)
                except ValueError as exc:
                    log.warning(
                        "deleting an unreadable SQS message %s: %s", message.get("MessageId"), exc
                    )
                    self.metrics.sqs_messages.labels("unreadable").inc()
                    parsed = ParsedMessage(s3_event=False)
                else:
                    outcome = "event" if parsed.s3_event else "other"
                    self.metrics.sqs_messages.labels(outcome).inc()
                for obj in parsed.objects:
                    indices.append(len(objects))
                    objects.append(obj)
                owners.append((message, indices))

            async def ack(
                handled: set[int], owners: list[tuple[dict[str, Any], list[int]]] = owners
            ) -> None:
                done = [m for m, indices in owners if all(i in handled for i in indices)]
                await self._delete(done)

            yield Batch(objects, ack=ack)

    async def _receive(self) -> list[dict[str, Any]]:
        """One long-poll receive, given up (nothing lost) when the process is asked to stop."""
        try:
            client = await self._sqs()
        except LIBRARY_ERRORS as exc:
            raise translate(exc, f"cannot reach SQS queue {self.queue_url}", None) from exc
        receive = asyncio.ensure_future(
            client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=_MAX_MESSAGES,
                WaitTimeSeconds=self.wait_s,
                VisibilityTimeout=self.visibility_timeout_s,
            )
        )
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError, *LIBRARY_ERRORS):
                await receive
            return []  # received messages, if any, reappear after the visibility timeout
        try:
            response = receive.result()
        except LIBRARY_ERRORS as exc:
            raise translate(exc, f"cannot receive from SQS queue {self.queue_url}", None) from exc
        return list(response.get("Messages", []))

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [
            {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
            for n, message in enumerate(messages)
        ]
        try:
            client = await self._sqs()
            response = await client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except LIBRARY_ERRORS as exc:
            # The objects are submitted; the messages come back and the ledger drops them.
            log.warning("cannot delete %d SQS message(s): %s", len(entries), exc)
            return
        for failure in response.get("Failed", []):
            log.warning("SQS did not delete a message: %s", failure.get("Message"))

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()
