"""How agents write: our records as JSON bytes on the topics, keyed as schemas/records.py says,
plus dlq records for what could not be processed."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any, Literal, Protocol

import pybase64
from aiokafka.structs import RecordMetadata
from pydantic import BaseModel

from schemas.records import (
    DlqRecord,
    ProgressEvent,
    encode,
)
from streams.kafka import KafkaSettings
from streams.runtime.clients import Producer

Stage = Literal["split", "recognize", "assemble"]


class Blobs(Protocol):
    async def fetch(
        self, url: str, *, max_bytes: int, expected_sha256: str | None = None
    ) -> bytes: ...

    async def put(self, data: bytes, name: str) -> str: ...


class Outbox:
    """Sends our records as JSON bytes, keyed as schemas/records.py says."""

    def __init__(self, producer: Producer, settings: KafkaSettings) -> None:
        self._producer = producer
        self.names = settings.topics

    async def send(self, name: str, key: str, record: BaseModel) -> asyncio.Future[Any]:
        """Hand a record to the producer; the returned future completes on delivery. Inside a
        handler the runner also waits for it (and sends it again if it fails) before the input
        record counts as finished."""
        return await self._producer.send(name, key.encode(), encode(record))

    async def settle(self) -> None:
        """Wait until the records this handler sent so far are on Kafka (see
        `Producer.settle`): failed ones are sent again, for as long as that takes."""
        await self._producer.settle()

    async def deliver(self, name: str, key: str, record: BaseModel | bytes) -> RecordMetadata:
        """Send a record (or its encoding, when the caller has it already) and wait until Kafka
        has it, sending it again after failures."""
        value = record if isinstance(record, bytes) else encode(record)
        return await self._producer.deliver(name, key.encode(), value)

    async def progress(self, event: ProgressEvent | None) -> None:
        if event is not None:
            await self.send(self.names.progress, event.doc_id, event)

    async def dlq(
        self,
        *,
        topic: str,
        key: bytes | None,
        value: bytes,
        stage: Stage,
        code: str,
        message: str,
        exc: BaseException | None = None,
        doc_id: str | None = None,
    ) -> None:
        encoding: Literal["utf-8", "base64"] = "utf-8"
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text, encoding = pybase64.b64encode_as_string(value), "base64"
        record = DlqRecord(
            topic=topic,
            key=key.decode(errors="replace") if key else None,
            value=text,
            value_encoding=encoding,
            stage=stage,
            error_code=code,
            message=message,
            exception="".join(traceback.format_exception(exc)) if exc else None,
            doc_id=doc_id,
        )
        await self.send(self.names.dlq, record.key or "", record)
