"""The ledger and the transactional submitter: doc_ids, and Kafka transactions on the real
broker (what a restart reads back, what an aborted or fenced source leaves behind)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from connectors.s3.errors import FatalError
from connectors.s3.ledger import (
    Ledger,
    LedgerEntry,
    ensure_ledger_topic,
    ledger_topic,
    load_ledger,
    object_doc_id,
)
from connectors.s3.submitter import Submitter
from schemas.options import ConversionOptions
from schemas.records import DocumentRequest
from streams.kafka import KafkaSettings
from tests.connectors.s3.fixtures import document_requests

SHA = "ab" * 32


def _pair(key: str, etag: str, revision: int = 1) -> tuple[DocumentRequest, LedgerEntry]:
    doc_id = object_doc_id(SHA, "bkt", key, revision, ConversionOptions())
    request = DocumentRequest(
        doc_id=doc_id,
        content_ref=f"s3://bkt/{key}",
        content_sha256=SHA,
        content_length=10,
        metadata={"s3.key": key, "s3.etag": etag},
    )
    entry = LedgerEntry(
        bucket="bkt",
        key=key,
        etag=etag,
        doc_id=doc_id,
        content_sha256=SHA,
        size=10,
        revision=revision,
    )
    return request, entry


def test_doc_ids_are_deterministic_per_content_object_revision_and_options() -> None:
    base = object_doc_id(SHA, "b", "k.pdf", 1, ConversionOptions())
    assert base == object_doc_id(SHA, "b", "k.pdf", 1, ConversionOptions())
    assert len(base) == 32
    others = {
        object_doc_id("cd" * 32, "b", "k.pdf", 1, ConversionOptions()),
        object_doc_id(SHA, "b2", "k.pdf", 1, ConversionOptions()),
        object_doc_id(SHA, "b", "j.pdf", 1, ConversionOptions()),
        object_doc_id(SHA, "b", "k.pdf", 2, ConversionOptions()),
        object_doc_id(SHA, "b", "k.pdf", 1, ConversionOptions(output_format="text")),
    }
    assert base not in others and len(others) == 5


def test_the_ledger_in_memory() -> None:
    ledger = Ledger("bkt", "in/")
    assert ledger.next_revision("in/a.pdf") == 1
    ledger.record(_pair("in/a.pdf", "e1")[1])
    ledger.record(_pair("out/b.pdf", "e1")[1])  # outside the prefix: not ours
    assert ledger.submitted("in/a.pdf", "e1") and not ledger.submitted("in/a.pdf", "e2")
    assert ledger.next_revision("in/a.pdf") == 2
    assert len(ledger) == 1


@pytest.mark.kafka
async def test_committed_submissions_are_read_back_and_aborted_ones_are_not(
    kafka_settings: KafkaSettings,
) -> None:
    assert ensure_ledger_topic(kafka_settings)
    assert not ensure_ledger_topic(kafka_settings)
    first = Submitter(kafka_settings, "test-source")
    await first.start()
    await first.submit([_pair("a.pdf", "e1"), _pair("b.pdf", "e1")])
    await first.submit([_pair("a.pdf", "e2", revision=2)])
    # An open transaction, as a SIGKILL would leave it: invisible, then aborted by the successor.
    assert first._producer is not None
    await first._producer.begin_transaction()
    request, entry = _pair("c.pdf", "e1")
    await first._producer.send_and_wait(kafka_settings.topics.documents, key=b"x", value=b"{}")
    await first._producer.send_and_wait(
        ledger_topic(kafka_settings), key=b"bkt/c.pdf", value=entry.encode()
    )

    second = Submitter(kafka_settings, "test-source")
    await second.start()  # fences `first` and aborts its open transaction
    ledger = await load_ledger(kafka_settings, "bkt")
    assert len(ledger) == 2
    assert ledger.get("a.pdf") is not None and ledger.get("a.pdf").etag == "e2"  # type: ignore[union-attr]
    assert ledger.next_revision("a.pdf") == 3
    assert ledger.get("c.pdf") is None
    assert len(document_requests(kafka_settings)) == 3

    with pytest.raises(FatalError, match="took over"):
        await first.submit([(request, entry)])
    await second.submit([(request, entry)])  # the successor goes on
    await second.close()
    assert (await load_ledger(kafka_settings, "bkt")).get("c.pdf") is not None


@pytest.mark.kafka
async def test_a_second_source_on_the_same_objects_fences_the_first(
    kafka_settings: KafkaSettings,
) -> None:
    ensure_ledger_topic(kafka_settings)
    first = Submitter(kafka_settings, "test-fence")
    await first.start()
    await first.submit([_pair("a.pdf", "e1")])
    second = Submitter(kafka_settings, "test-fence")
    await second.start()
    with pytest.raises(FatalError, match="another s3-source with the same instance id"):
        await first.submit([_pair("b.pdf", "e1")])
    await second.close()
    assert len(await load_ledger(kafka_settings, "bkt")) == 1


@pytest.mark.kafka
async def test_a_tombstone_forgets_an_object(kafka_settings: KafkaSettings) -> None:
    ensure_ledger_topic(kafka_settings)
    submitter = Submitter(kafka_settings, "test-tombstone")
    await submitter.start()
    await submitter.submit([_pair("a.pdf", "e1"), _pair("b.pdf", "e1")])
    await submitter.close()
    producer = Producer(kafka_settings.producer_config())
    producer.produce(ledger_topic(kafka_settings), key=b"bkt/a.pdf", value=None)
    producer.produce(ledger_topic(kafka_settings), key=b"bkt/z.pdf", value=b"not json")
    assert producer.flush(10) == 0
    ledger = await load_ledger(kafka_settings, "bkt")
    assert ledger.get("a.pdf") is None and ledger.get("b.pdf") is not None
    assert (await load_ledger(kafka_settings, "other-bucket")).get("b.pdf") is None
