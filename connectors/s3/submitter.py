"""Submitting document requests and their ledger entries together, in Kafka transactions.

One transaction holds a batch of (DocumentRequest, LedgerEntry) pairs: the requests go to the
documents topic (key doc_id), the entries to the ledger topic (key bucket/key). A consumer that
reads committed records (the ledger reader, the SDK) sees both or neither. The transactional id
is stable per watched bucket and prefix, so a restarted source fences its predecessor and
aborts whatever transaction that one left open.

The confluent-kafka calls block; the source runs them in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from connectors.kafka_config import LIBRDKAFKA_LOGGER, KafkaSettings
from connectors.s3.errors import FatalError, TransientError
from connectors.s3.ledger import LedgerEntry, ledger_topic
from schemas.records import DocumentRequest, encode

log = logging.getLogger(__name__)

#: How long one transaction step (init, commit, abort) may take before we give up on it.
TRANSACTION_TIMEOUT_S = 30.0
#: Kafka aborts a transaction left open this long by a crashed source (ms).
_TRANSACTION_TIMEOUT_MS = 60_000


class Submitter:
    """A transactional producer for the documents and ledger topics."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        self.documents_topic = settings.topics.documents
        self.ledger_topic = ledger_topic(settings)
        self._producer: Producer | None = None

    def start(self) -> None:
        """Create the producer and register its transactional id (fencing any predecessor)."""
        producer = Producer(
            self.settings.producer_config(
                **{
                    "transactional.id": self.transactional_id,
                    "transaction.timeout.ms": _TRANSACTION_TIMEOUT_MS,
                    "linger.ms": 5,
                    "logger": LIBRDKAFKA_LOGGER,
                }
            )
        )
        try:
            producer.init_transactions(TRANSACTION_TIMEOUT_S)
        except KafkaException as exc:
            raise _translate(exc, "cannot start Kafka transactions") from exc
        self._producer = producer

    @property
    def started(self) -> bool:
        return self._producer is not None

    def submit(self, items: Sequence[tuple[DocumentRequest, LedgerEntry]]) -> None:
        """Produce every pair in one transaction and commit it; on any error nothing is
        visible, and the caller retries (doc_ids are deterministic)."""
        if not items:
            return
        producer = self._producer
        if producer is None:
            raise RuntimeError("Submitter.start() first")
        try:
            producer.begin_transaction()
            for request, entry in items:
                assert request.doc_id is not None
                producer.produce(
                    self.documents_topic, key=request.doc_id.encode(), value=encode(request)
                )
                producer.produce(
                    self.ledger_topic, key=entry.ledger_key.encode(), value=entry.encode()
                )
            producer.commit_transaction(TRANSACTION_TIMEOUT_S)
        except (KafkaException, BufferError) as exc:
            error = _translate(exc, f"cannot submit {len(items)} document(s) to Kafka")
            fatal = self._abort(exc)
            raise (fatal or error) from exc

    def _abort(self, cause: BaseException) -> FatalError | None:
        """Abort the open transaction; the fatal error it reveals (fenced), if any."""
        producer = self._producer
        if producer is None:
            return None
        kafka_error = cause.args[0] if isinstance(cause, KafkaException) and cause.args else None
        if isinstance(kafka_error, KafkaError) and kafka_error.fatal():
            self._producer = None  # unusable: a fresh one is made on the next start()
            return None
        try:
            producer.abort_transaction(TRANSACTION_TIMEOUT_S)
        except KafkaException as exc:
            self._producer = None
            error = _translate(exc, "cannot abort the Kafka transaction")
            if isinstance(error, FatalError):
                return error
            log.warning("aborting the Kafka transaction failed (%s); starting afresh", exc)
        return None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(TRANSACTION_TIMEOUT_S)
            self._producer = None


def _translate(exc: BaseException, what: str) -> TransientError | FatalError:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(error, KafkaError):
        if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
            return FatalError(
                f"{what}: another s3-source with the same instance id took over ({error.str()}); "
                "run one source per bucket and prefix, or give each its own --instance-id"
            )
        return TransientError(f"{what}: {error.str()}")
    return TransientError(f"{what}: {exc}")
