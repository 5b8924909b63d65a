"""The client SDK against the real broker: submit (inline and claim check), results, progress."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from confluent_kafka import Producer

from connectors.client import OcrfluxClient
from ocrflux.identity import content_digest, doc_id_for
from schemas.options import ConversionOptions
from schemas.records import DocumentRequest, ProgressEvent, ResultRecord, decode, encode
from schemas.results import ErrorInfo
from streams.blobstore import BlobSettings, FileBlobStore, fetch
from streams.kafka import KafkaClientError, KafkaSettings
from tests.connectors.fixtures import S3Endpoint, consume, produce

pytestmark = pytest.mark.kafka

PDF = b"%PDF-1.4\n% a small document\n" + bytes(range(256)) * 4


def _requests(settings: KafkaSettings, count: int) -> list[tuple[str, DocumentRequest]]:
    messages = consume(settings, settings.topics.documents, count)
    requests = []
    for message in messages:
        record = decode(message.value())
        assert isinstance(record, DocumentRequest)
        requests.append((message.key().decode(), record))
    return requests


def test_submit_inline(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    path = tmp_path / "small.pdf"
    path.write_bytes(PDF)
    options = ConversionOptions(output_format="text")
    with OcrfluxClient(kafka_settings) as client:
        doc_id = client.submit(path, options, metadata={"job": "42"})
    [(key, request)] = _requests(kafka_settings, 1)
    assert key == doc_id == doc_id_for(content_digest(PDF), options)
    assert request.doc_id == doc_id
    assert request.content == PDF
    assert request.content_ref is None
    assert request.content_sha256 == hashlib.sha256(PDF).hexdigest()
    assert request.content_length == len(PDF)
    assert request.filename == "small.pdf"
    assert request.content_type == "application/pdf"
    assert request.options == options
    assert request.metadata == {"job": "42"}


def test_submit_claim_check_to_a_folder(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    with OcrfluxClient(kafka_settings, blob_base_url=blobs.as_uri(), inline_limit=100) as client:
        doc_id = client.submit(PDF, filename="large.pdf")
    [(key, request)] = _requests(kafka_settings, 1)
    raw = consume(kafka_settings, kafka_settings.topics.documents, 1)[0].value()
    assert key == doc_id
    assert request.content is None
    assert request.content_ref is not None and request.content_ref.startswith("file://")
    assert request.content_sha256 == content_digest(PDF)
    assert request.content_length == len(PDF)
    assert b'"content":null' in raw
    assert FileBlobStore(blobs).path_of(request.content_ref).read_bytes() == PDF


async def test_claim_check_reference_resolves_with_fetch(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = BlobSettings(ocrflux_blob_dir=tmp_path)
    with OcrfluxClient(kafka_settings, blob_settings=settings, inline_limit=0) as client:
        client.submit(b"%PDF-1.4 tiny")
    [(_, request)] = _requests(kafka_settings, 1)
    assert request.content_ref is not None
    data = await fetch(
        request.content_ref,
        max_bytes=100,
        expected_sha256=request.content_sha256,
        settings=settings,
    )
    assert data == b"%PDF-1.4 tiny"


def test_submit_claim_check_to_s3(
    kafka_settings: KafkaSettings, s3_env: S3Endpoint, s3_bucket: str
) -> None:
    with OcrfluxClient(
        kafka_settings, blob_base_url=f"s3://{s3_bucket}/incoming", inline_limit=10
    ) as client:
        client.submit(PDF, filename="s3.pdf")
    [(_, request)] = _requests(kafka_settings, 1)
    assert request.content is None
    assert request.content_ref is not None
    assert request.content_ref.startswith(f"s3://{s3_bucket}/incoming/")
    import boto3

    bucket, key = request.content_ref.removeprefix("s3://").split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == PDF


def test_doc_id_is_deterministic(kafka_settings: KafkaSettings) -> None:
    with OcrfluxClient(kafka_settings) as client:
        first = client.submit(PDF)
        again = client.submit(bytearray(PDF))
        as_text = client.submit(PDF, ConversionOptions(output_format="text"))
        other_bytes = client.submit(PDF + b"\n")
        chosen = client.submit(PDF, doc_id="caller-chosen")
    assert first == again
    assert len({first, as_text, other_bytes}) == 3
    assert chosen == "caller-chosen"
    keys = [key for key, _ in _requests(kafka_settings, 5)]
    assert sorted(keys) == sorted([first, again, as_text, other_bytes, chosen])


def test_unknown_content_is_sent_without_a_type(kafka_settings: KafkaSettings) -> None:
    with OcrfluxClient(kafka_settings) as client:
        client.submit(b"PK\x03\x04 a zip archive", filename="renamed.pdf")
        client.submit(b"")
    types = {request.filename: request.content_type for _, request in _requests(kafka_settings, 2)}
    assert types == {"renamed.pdf": None, None: None}


def _result(doc_id: str, status: str = "completed", **fields: object) -> ResultRecord:
    return ResultRecord(doc_id=doc_id, status=status, **fields)  # type: ignore[arg-type]


def _event(doc_id: str, stage: str, done: int) -> ProgressEvent:
    return ProgressEvent(doc_id=doc_id, stage=stage, pages_done=done, pages_total=3)  # type: ignore[arg-type]


def test_results_latest_per_document(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    full = _result("big", num_pages=300, content="# a very long document\n", source="big.pdf")
    ref = (tmp_path / "big.result.json").as_uri()
    (tmp_path / "big.result.json").write_bytes(encode(full))
    failed = _result("a", "failed", error=ErrorInfo(code="corrupt", message="damaged"))
    produce(
        kafka_settings,
        kafka_settings.topics.results,
        [
            ("a", failed),
            ("gone", _result("gone")),
            ("a", _result("a", content="A")),
            ("big", _result("big", num_pages=300, result_ref=ref)),
            ("gone", None),
        ],
    )
    blob_settings = BlobSettings(ocrflux_blob_dir=tmp_path)
    with OcrfluxClient(kafka_settings, blob_settings=blob_settings) as client:
        everything = {r.doc_id: r for r in client.results(timeout_s=60)}
        assert set(everything) == {"a", "big"}
        assert everything["a"].content == "A"
        assert everything["big"].content == "# a very long document\n"
        assert everything["big"].source == "big.pdf"
        assert everything["big"].result_ref == ref

        [only_a] = client.results(["a"], timeout_s=60)
        assert only_a.status == "completed"
        [unresolved] = client.results(["big"], resolve_refs=False, timeout_s=60)
        assert unresolved.content == ""
        assert list(client.results(["never"], wait=False, timeout_s=60)) == []


def test_results_waits_for_new_ones(kafka_settings: KafkaSettings) -> None:
    produce(kafka_settings, kafka_settings.topics.results, [("old", _result("old"))])
    with OcrfluxClient(kafka_settings) as client:
        following = client.results(follow=True, timeout_s=60)
        assert next(following).doc_id == "old"  # yielded once the reader caught up
        produce(kafka_settings, kafka_settings.topics.results, [("new", _result("new"))])
        assert next(following).doc_id == "new"
        following.close()

        waiting = client.results(["later"], timeout_s=60)
        produce(kafka_settings, kafka_settings.topics.results, [("later", _result("later"))])
        assert [r.doc_id for r in waiting] == ["later"]


def test_results_end_at_the_timeout(kafka_settings: KafkaSettings) -> None:
    with OcrfluxClient(kafka_settings) as client:
        assert list(client.results(["absent"], timeout_s=1.0)) == []


def test_progress(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topics.progress

    def event(doc_id: str, stage: str, done: int) -> tuple[str, ProgressEvent]:
        return doc_id, _event(doc_id, stage, done)

    produce(kafka_settings, topic, [event("p", "split", 0), event("p", "recognize", 1)])
    produce(kafka_settings, topic, [event("q", "completed", 3)])
    with OcrfluxClient(kafka_settings) as client:
        latest = {e.doc_id: (e.stage, e.pages_done) for e in client.progress(follow=False)}
        assert latest == {"p": ("recognize", 1), "q": ("completed", 3)}

        following = client.progress("p", timeout_s=60)
        assert next(following).pages_done == 1  # the latest so far, yielded once caught up
        produce(kafka_settings, topic, [event("p", "recognize", 2), event("p", "completed", 3)])
        assert [(e.stage, e.pages_done) for e in following] == [
            ("recognize", 2),
            ("completed", 3),
        ]


def test_watch_yields_progress_then_the_result(kafka_settings: KafkaSettings) -> None:
    produce(
        kafka_settings,
        kafka_settings.topics.progress,
        [("w", ProgressEvent(doc_id="w", stage="recognize", pages_done=1, pages_total=2))],
    )
    with OcrfluxClient(kafka_settings) as client:
        watching = client.watch(["w"], timeout_s=60)
        first = next(watching)
        assert isinstance(first, ProgressEvent)
        produce(kafka_settings, kafka_settings.topics.results, [("w", _result("w"))])
        rest = list(watching)
    assert [type(r).__name__ for r in rest] == ["ResultRecord"]


def test_inline_limit_must_fit_a_record(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        OcrfluxClient(kafka_settings, inline_limit=kafka_settings.kafka_message_max_bytes)


@pytest.mark.parametrize("create_topics", [True, False])
def test_no_answering_broker_fails_fast(create_topics: bool) -> None:
    from deploy.kafka_broker import free_port

    settings = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    with OcrfluxClient(settings, create_topics=create_topics, connect_timeout_s=1) as client:
        with pytest.raises(KafkaClientError):
            client.submit(PDF)
        with pytest.raises(KafkaClientError, match="no answer from Kafka"):
            list(client.results())


def test_file_names_that_are_not_utf8_are_sent_escaped(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.pdf"))
    path.write_bytes(PDF)
    with OcrfluxClient(kafka_settings) as client:
        client.submit(path)
        client.submit(PDF, filename=os.fsdecode(b"r\xe9sum\xe9.pdf"))
    names = [request.filename for _, request in _requests(kafka_settings, 2)]
    assert sorted(names) == ["caf\\xe9.pdf", "r\\xe9sum\\xe9.pdf"]


def test_mark_is_where_each_partition_of_progress_and_results_ends(
    kafka_settings: KafkaSettings,
) -> None:
    topics = kafka_settings.topics
    with OcrfluxClient(kafka_settings) as client:
        before = client.mark()
        produce(
            kafka_settings, topics.results, [(f"doc{n}", _result(f"doc{n}")) for n in range(12)]
        )
        produce(kafka_settings, topics.progress, [("doc0", _event("doc0", "split", 0))] * 3)
        after = client.mark()
    counted: dict[tuple[str, int], int] = {}
    for topic, count in ((topics.results, 12), (topics.progress, 3)):
        for message in consume(kafka_settings, topic, count):
            where = (topic, message.partition())
            counted[where] = max(counted.get(where, 0), message.offset() + 1)
    assert len([t for t, _ in counted if t == topics.results]) > 1  # spread over partitions
    assert {t for t, _ in after} == {topics.results, topics.progress}
    assert set(before) == set(after) and set(counted) <= set(after)
    assert all(before[p] == 0 for p in before)
    assert after == {p: counted.get(p, 0) for p in after}


def test_watch_after_a_mark_reads_only_what_came_since(
    kafka_settings: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """`submit --wait` takes a mark first: nothing older is read, so neither an earlier result
    of the same document nor the topics' history (here: other documents' records and one that
    cannot be decoded, which a reader would log) reaches the watch."""
    topics = kafka_settings.topics
    old = [(f"other{n}", _result(f"other{n}")) for n in range(200)] + [("w", _result("w"))]
    produce(kafka_settings, topics.results, old)
    produce(kafka_settings, topics.progress, [("w", _event("w", "completed", 2))])
    producer = Producer(kafka_settings.producer_config())
    producer.produce(topics.results, key=b"w", value=b"not a record")
    assert producer.flush(30) == 0
    with OcrfluxClient(kafka_settings) as client:
        mark = client.mark()
        produce(kafka_settings, topics.progress, [("w", _event("w", "recognize", 1))])
        watching = client.watch(["w"], timeout_s=60, after=mark)
        first = next(watching)
        produce(kafka_settings, topics.results, [("w", _result("w", "partial"))])
        rest = list(watching)
    assert isinstance(first, ProgressEvent) and first.stage == "recognize"
    assert [(type(r).__name__, getattr(r, "status", None)) for r in rest] == [
        ("ResultRecord", "partial")
    ]
    assert "undecodable" not in caplog.text
