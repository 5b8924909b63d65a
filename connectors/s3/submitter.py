"""Submitting document requests and their ledger entries together, in Kafka transactions.

One transaction holds a batch of (DocumentRequest, LedgerEntry) pairs: the requests go to the
documents topic (key doc_id), the entries to the ledger topic (key bucket/key). A consumer that
reads committed records (the ledger reader, the SDK) sees both or neither. The transactional id
is stable per watched bucket and prefix, so a restarted source fences its predecessor and
aborts whatever transaction that one left open.

The producer is aiokafka's transactional producer, on the source's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState

from connectors.s3.errors import FatalError, TransientError
from connectors.s3.ledger import LedgerEntry, ledger_topic
from schemas.records import DocumentRequest, encode
from streams.kafka import KafkaSettings

log = logging.getLogger(__name__)

#: How long one transaction step (start, commit, abort) may take before we give up on it.
TRANSACTION_TIMEOUT_S = 30.0
#: Kafka aborts a transaction left open this long by a crashed source (ms).
_TRANSACTION_TIMEOUT_MS = 60_000
#: The broker's answers that mean another producer with our transactional id took over.
_FENCED = (ProducerFenced, InvalidProducerEpoch)


class Submitter:
    """A transactional producer for the documents and ledger topics."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        self.documents_topic = settings.topics.documents
        self.ledger_topic = ledger_topic(settings)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Create the producer and register its transactional id (fencing any predecessor and
        aborting the transaction it left open)."""
        producer = AIOKafkaProducer(
            **self.settings.aiokafka_options(),
            client_id=f"ocrflux-s3-source-{self.transactional_id}",
            transactional_id=self.transactional_id,
            transaction_timeout_ms=_TRANSACTION_TIMEOUT_MS,
            enable_idempotence=True,
            acks="all",
            max_request_size=self.settings.kafka_message_max_bytes,
            linger_ms=5,
            request_timeout_ms=int(TRANSACTION_TIMEOUT_S * 1000),
        )
        try:
            async with asyncio.timeout(TRANSACTION_TIMEOUT_S):
                await producer.start()
        except (KafkaError, TimeoutError) as exc:
            await _stop_quietly(producer)
            raise _translate(exc, "cannot start Kafka transactions") from exc
        self._producer = producer

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def submit(self, items: Sequence[tuple[DocumentRequest, LedgerEntry]]) -> None:
        """Produce every pair in one transaction and commit it; on any error nothing is
        visible, and the caller retries (doc_ids are deterministic)."""
        if not items:
            return
        producer = self._producer
        if producer is None:
            raise RuntimeError("Submitter.start() first")
        try:
            async with asyncio.timeout(TRANSACTION_TIMEOUT_S):
                if _in_transaction(producer):  # left open by an interrupted submit
                    await producer.abort_transaction()
                await producer.begin_transaction()
                for request, entry in items:
                    assert request.doc_id is not None
                    sent = await producer.send(
                        self.documents_topic, key=request.doc_id.encode(), value=encode(request)
                    )
                    sent.add_done_callback(_seen)  # failures surface in the commit
                    sent = await producer.send(
                        self.ledger_topic, key=entry.ledger_key.encode(), value=entry.encode()
                    )
                    sent.add_done_callback(_seen)
                _raise_fatal(producer)
                await producer.commit_transaction()
        except (KafkaError, TimeoutError) as exc:
            error = _translate(exc, f"cannot submit {len(items)} document(s) to Kafka")
            fatal = await self._abort()
            raise (fatal or error) from exc

    async def _abort(self) -> FatalError | None:
        """Abort the open transaction; the fatal error it reveals (fenced), if any. A producer
        that cannot go on is dropped: a fresh one is made on the next start()."""
        producer = self._producer
        if producer is None:
            return None
        error: TransientError | FatalError | None = None
        fatal = _fatal_cause(producer)
        if fatal is not None:
            error = _translate(fatal, "cannot abort the Kafka transaction")
        elif not _abortable(producer):  # e.g. a commit that timed out: its outcome is unknown
            error = TransientError("the Kafka transaction ended in an unknown state")
        else:
            try:
                async with asyncio.timeout(TRANSACTION_TIMEOUT_S):
                    await producer.abort_transaction()
            except (KafkaError, TimeoutError) as exc:
                error = _translate(exc, "cannot abort the Kafka transaction")
                log.warning("aborting the Kafka transaction failed (%s); starting afresh", exc)
        if error is None:
            return None
        self._producer = None
        await _stop_quietly(producer)
        return error if isinstance(error, FatalError) else None

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer)


def _in_transaction(producer: AIOKafkaProducer) -> bool:
    """Whether a transaction is open (aiokafka asserts instead of raising on a second begin)."""
    manager = producer._txn_manager
    return manager is not None and manager.is_in_transaction()


def _abortable(producer: AIOKafkaProducer) -> bool:
    """Whether the open transaction can be aborted (aiokafka asserts where it cannot)."""
    manager = producer._txn_manager
    return manager is not None and manager.state in (
        TransactionState.IN_TRANSACTION,
        TransactionState.ABORTABLE_ERROR,
    )


def _fatal_cause(producer: AIOKafkaProducer) -> KafkaError | None:
    """The error that ended the producer's transactions for good (fenced, or another fatal
    answer), or None while it can go on. aiokafka has no public way to ask."""
    manager = producer._txn_manager
    if manager is None or not manager.is_fatal_error():
        return None
    ended = manager.wait_for_transaction_end()
    cause = ended.exception() if ended.done() and not ended.cancelled() else None
    return cause if isinstance(cause, KafkaError) else KafkaError("the producer failed")


def _raise_fatal(producer: AIOKafkaProducer) -> None:
    """Raise the error that ended the producer's transactions, if one did: aiokafka would
    refuse the commit with an `AssertionError` (its state check) instead of the cause."""
    cause = _fatal_cause(producer)
    if cause is not None:
        raise cause


def _seen(future: asyncio.Future[object]) -> None:
    """Mark a send's outcome as read (its failure is the transaction's, raised by the commit)."""
    if not future.cancelled():
        future.exception()


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        async with asyncio.timeout(TRANSACTION_TIMEOUT_S):
            await producer.stop()
    except (KafkaError, TimeoutError) as exc:
        log.warning("stopping the Kafka producer failed: %s", exc)


def _translate(exc: BaseException, what: str) -> TransientError | FatalError:
    if isinstance(exc, _FENCED):
        return FatalError(
            f"{what}: another s3-source with the same instance id took over ({exc}); "
            "run one source per bucket and prefix, or give each its own --instance-id"
        )
    if isinstance(exc, TimeoutError):
        return TransientError(f"{what}: no answer from Kafka in {TRANSACTION_TIMEOUT_S:g} s")
    return TransientError(f"{what}: {exc}")
