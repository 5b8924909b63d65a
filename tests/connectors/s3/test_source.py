"""The source's handling of discovered batches and its run loop, with a fake store and a fake
submitter (no servers)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, Callable, Sequence

import pytest

from connectors.s3.discovery import Batch
from connectors.s3.errors import AccessDenied, ObjectChanged, TransientError
from connectors.s3.ledger import LedgerEntry, object_doc_id
from connectors.s3.metrics import SourceMetrics
from connectors.s3.objects import Digest, ObjectInfo
from connectors.s3.settings import S3SourceSettings
from connectors.s3.source import S3Source
from schemas.options import ConversionOptions
from schemas.records import DocumentRequest

PDF = b"%PDF-1.4 test"


class FakeStore:
    """Objects by key: (etag, bytes, content type); anything else is gone."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, bytes, str]] = {}
        self.fail: Exception | None = None
        self.reads: list[str] = []

    def put(self, key: str, data: bytes = PDF, content_type: str = "application/pdf") -> ObjectInfo:
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        self.objects[key] = (etag, data, content_type)
        return ObjectInfo("bkt", key, etag, len(data))

    async def digest(
        self, obj: ObjectInfo, *, accept_type: Callable[[str | None], bool] | None = None
    ) -> Digest | None:
        self.reads.append(obj.key)
        if self.fail is not None:
            raise self.fail
        current = self.objects.get(obj.key)
        if current is None or (obj.etag and current[0] != obj.etag):
            raise ObjectChanged(f"{obj.url} changed")
        _, data, content_type = current
        if accept_type is not None and not accept_type(content_type):
            return None
        digest = hashlib.sha256(data).hexdigest()
        return Digest(digest, len(data), content_type, data[:4096], current[0])

    async def close(self) -> None:
        return None


class FakeSubmitter:
    def __init__(self) -> None:
        self.transactions: list[list[tuple[DocumentRequest, LedgerEntry]]] = []
        self.fail: Exception | None = None
        self.started = True

    async def submit(self, items: Sequence[tuple[DocumentRequest, LedgerEntry]]) -> None:
        if self.fail is not None:
            raise self.fail
        self.transactions.append(list(items))

    @property
    def requests(self) -> list[DocumentRequest]:
        return [request for items in self.transactions for request, _ in items]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Acks:
    def __init__(self) -> None:
        self.calls: list[set[int]] = []

    async def __call__(self, handled: set[int]) -> None:
        self.calls.append(handled)


def _source(**settings: object) -> tuple[S3Source, FakeStore, FakeSubmitter]:
    values = {
        "ocrflux_s3_bucket": "bkt",
        "kafka_bootstrap_servers": "127.0.0.1:9",
        "ocrflux_s3_concurrency": 2,
        **settings,
    }
    source = S3Source(S3SourceSettings(**values), stop=asyncio.Event(), metrics=SourceMetrics())
    store, submitter = FakeStore(), FakeSubmitter()
    source.store = store  # type: ignore[assignment]
    source.submitter = submitter  # type: ignore[assignment]
    return source, store, submitter


async def test_new_objects_become_claim_checks_and_known_ones_are_skipped() -> None:
    source, store, submitter = _source(ocrflux_s3_prefix="in/")
    objects = [store.put(f"in/{n}.pdf", PDF + bytes([n])) for n in range(5)]
    objects += [store.put("in/notes.txt"), store.put("elsewhere/x.pdf")]
    acks = Acks()
    await source.handle(Batch(objects, ack=acks))
    assert [len(t) for t in submitter.transactions] == [2, 2, 1]  # chunks of `concurrency`
    assert acks.calls == [set(range(7))]
    request = submitter.requests[0]
    data = PDF + bytes([0])
    sha = hashlib.sha256(data).hexdigest()
    assert request.content is None and request.content_ref == "s3://bkt/in/0.pdf"
    assert request.content_sha256 == sha and request.content_length == len(data)
    crop = ConversionOptions(figures="crop")  # the source's default
    assert request.options == crop
    assert request.doc_id == object_doc_id(sha, "bkt", "in/0.pdf", 1, crop)
    assert request.filename == "0.pdf" and request.content_type == "application/pdf"
    assert request.metadata["s3.key"] == "in/0.pdf"
    assert request.metadata["s3.etag"] == objects[0].etag
    assert request.metadata["s3.revision"] == "1"
    assert source.metrics.skipped.labels("suffix")._value.get() == 1
    assert source.metrics.skipped.labels("prefix")._value.get() == 1

    # The same listing again: nothing new is read or submitted.
    store.reads.clear()
    await source.handle(Batch(objects, ack=acks))
    assert store.reads == [] and len(submitter.requests) == 5
    assert acks.calls[-1] == set(range(7))


async def test_a_changed_object_is_a_new_revision_with_a_new_doc_id() -> None:
    source, store, submitter = _source()
    first = store.put("a.pdf", PDF)
    await source.handle(Batch([first]))
    second = store.put("a.pdf", PDF + b" v2")
    await source.handle(Batch([first, second]))  # the old version is known, the new one not
    [one, two] = submitter.requests
    assert (one.metadata["s3.revision"], two.metadata["s3.revision"]) == ("1", "2")
    assert one.doc_id != two.doc_id
    # Back to the first content: a third revision, so the output follows it again.
    third = store.put("a.pdf", PDF)
    assert third.etag == first.etag
    await source.handle(Batch([third]))
    assert submitter.requests[-1].metadata["s3.revision"] == "3"
    assert submitter.requests[-1].doc_id not in {one.doc_id, two.doc_id}


async def test_several_events_for_one_key_submit_only_its_current_version() -> None:
    source, store, submitter = _source()
    old = store.put("a.pdf", PDF)
    new = store.put("a.pdf", PDF + b" new")
    gone = ObjectInfo("bkt", "b.pdf", "e", 10)
    acks = Acks()
    await source.handle(Batch([new, old, new, gone], ack=acks))
    assert [r.metadata["s3.etag"] for r in submitter.requests] == [new.etag]
    assert acks.calls == [{0, 1, 2, 3}]
    assert source.metrics.skipped.labels("changed")._value.get() == 1


async def test_an_event_without_an_etag_submits_the_current_version() -> None:
    source, store, submitter = _source()
    current = store.put("a.pdf")
    await source.handle(Batch([ObjectInfo("bkt", "a.pdf", "", current.size)]))
    [request] = submitter.requests
    assert request.metadata["s3.etag"] == current.etag
    assert source.ledger.submitted("a.pdf", current.etag)


async def test_content_type_rule() -> None:
    source, store, submitter = _source(ocrflux_s3_content_types="application/pdf")
    wanted = store.put("a.pdf")
    unwanted = store.put("b.pdf", PDF + b"b", content_type="binary/octet-stream")
    acks = Acks()
    await source.handle(Batch([wanted, unwanted], ack=acks))
    assert [r.content_ref for r in submitter.requests] == ["s3://bkt/a.pdf"]
    assert acks.calls == [{0, 1}]


async def test_errors_leave_unsubmitted_objects_unacknowledged() -> None:
    source, store, submitter = _source(ocrflux_s3_concurrency=1)
    objects = [store.put(f"{n}.pdf", PDF + bytes([n])) for n in range(3)]
    submitter.fail = TransientError("Kafka is away")
    acks = Acks()
    with pytest.raises(TransientError):
        await source.handle(Batch(objects, ack=acks))
    assert acks.calls == [set()]
    assert not source.ledger.submitted("0.pdf", objects[0].etag)
    submitter.fail = None
    store.fail = AccessDenied("no")
    with pytest.raises(AccessDenied):
        await source.handle(Batch(objects, ack=acks))
    store.fail = None
    await source.handle(Batch(objects, ack=acks))
    assert len(submitter.requests) == 3 and acks.calls[-1] == {0, 1, 2}


async def test_a_stop_request_ends_the_batch_after_the_current_chunk() -> None:
    source, store, submitter = _source(ocrflux_s3_concurrency=1)
    objects = [store.put(f"{n}.pdf", PDF + bytes([n])) for n in range(3)]
    acks = Acks()
    original = submitter.submit

    async def submit_then_stop(items: Sequence[tuple[DocumentRequest, LedgerEntry]]) -> None:
        await original(items)
        source.stop.set()

    submitter.submit = submit_then_stop  # type: ignore[method-assign]
    await source.handle(Batch(objects, ack=acks))
    assert len(submitter.requests) == 1
    assert acks.calls == [{0}]


class FlakyDiscovery:
    """Fails `failures` times with AccessDenied, then yields one batch and stops."""

    def __init__(self, source: S3Source, objects: list[ObjectInfo], failures: int) -> None:
        self.source = source
        self.objects = objects
        self.failures = failures

    async def batches(self) -> AsyncGenerator[Batch, None]:
        if self.failures:
            self.failures -= 1
            raise AccessDenied("cannot list s3://bkt/: access denied (SignatureDoesNotMatch)")
        yield Batch(self.objects)
        self.source.stop.set()

    async def close(self) -> None:
        return None


async def test_the_run_loop_backs_off_with_one_line_per_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, store, submitter = _source(ocrflux_s3_retry_initial_s=0.01, ocrflux_s3_retry_max_s=0.04)
    source.discovery = FlakyDiscovery(source, [store.put("a.pdf")], failures=4)
    source._start = _noop  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="connectors.s3"):
        assert await source.run() == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4
    delays = [float(e.split("retrying in ")[1].split("s ")[0]) for e in errors]
    ceilings = [0.01, 0.02, 0.04, 0.04]  # doubling, capped at the maximum (full jitter under it)
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert all("SignatureDoesNotMatch" in e for e in errors)
    assert source.backoff.failures == 0  # reset after the success
    assert source.metrics.errors.labels("access_denied")._value.get() == 4
    assert len(submitter.requests) == 1


async def _noop() -> None:
    return None
