"""Cancelling through Kafka (`OcrfluxClient.cancel`, `ocrflux cancel`): split stops emitting,
recognize skips the queued pages, and one `cancelled` result arrives; and a finished document
submitted again is answered without any model request."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.records import DocumentCancelled, PageTask, ResultRecord
from tests.scenarios import generated_cases, register
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka

DRAIN_TIMEOUT_S = 60.0


def _page_requests(pipeline: Pipeline) -> int:
    return sum(pipeline.server.stats()["by_task"].get("page", {}).values())


def _drained(pipeline: Pipeline, role: str, topic: str) -> None:
    """Until the role's consumer group has committed every record of `topic`: whatever those
    records cause is on Kafka by then."""
    name = getattr(pipeline.kafka.topics, topic)
    group = f"{pipeline.kafka.ocrflux_topic_prefix}.{role}"
    consumer = Consumer(pipeline.kafka.consumer_config(group))
    try:
        parts = [
            TopicPartition(name, p)
            for p in consumer.list_topics(name, timeout=10).topics[name].partitions
        ]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            committed = {p.partition: p.offset for p in consumer.committed(parts, timeout=10)}
            if all(committed[p] >= end for p, end in ends.items() if end > 0):
                return
            assert time.monotonic() < deadline, f"{group} stopped at {committed} of {ends}"
            time.sleep(0.2)  # poll interval on the group's committed offsets
    finally:
        consumer.close()


def test_a_300_page_document_cancelled_after_20_pages(pipeline: Pipeline) -> None:
    case = generated_cases(2, seed=300, max_pages=300)[1]
    assert len(case.model_pages) == 300
    register(pipeline.server, case)
    # A GPU that answers 20 pages a second. The worker keeps its default 256 pages in hand, 16
    # of them sent to the model: the cancel abandons those (vLLM aborts a request whose client
    # went away) and never sends the others.
    pipeline.server.configure(service_time=0.1, capacity=2)
    pipeline.start_worker("worker", VLLM_MAX_INFLIGHT="16")
    doc_id = pipeline.client.submit(case.data, filename=case.name, metadata={"team": "ops"})
    pipeline.server.wait_for(completed=20, timeout=120)
    pipeline.client.cancel(doc_id, reason="test")

    result = pipeline.results([doc_id])[doc_id]
    assert result.status == "cancelled" and result.error is not None
    assert result.error.code == "cancelled"
    assert result.metadata == {"team": "ops"} and result.num_pages == 300
    _drained(pipeline, "recognize", "pages")
    _drained(pipeline, "assemble", "page_results")
    answers = [r for r in pipeline.records("results") if r.doc_id == doc_id]
    assert [a.status for a in answers] == ["cancelled"]
    asked = _page_requests(pipeline)
    print(f"page requests after a cancel at 20 pages done: {asked} of 300")
    assert 20 <= asked < 100, asked
    records = pipeline.records("page_results")
    skipped = [r for r in records if isinstance(r, DocumentCancelled) and r.doc_id == doc_id]
    assert skipped, "no stage reported the cancel"
    emitted = sum(1 for r in pipeline.records("pages") if isinstance(r, PageTask))
    assert emitted < 300 or any(r.stage == "recognize" for r in skipped)


def test_a_cancelled_document_submitted_again_is_converted_again(pipeline: Pipeline) -> None:
    case = generated_cases(1, seed=41, max_pages=6)[0]
    register(pipeline.server, case)
    pipeline.server.configure(paused=True)  # nothing is recognized before the cancel
    pipeline.start_worker("worker")
    doc_id = pipeline.client.submit(case.data, filename=case.name)
    pipeline.client.cancel(doc_id)
    first = pipeline.results([doc_id])[doc_id]
    assert first.status == "cancelled"
    pipeline.server.configure(paused=False)

    mark = pipeline.client.mark()
    assert pipeline.client.submit(case.data, filename=case.name) == doc_id
    answers = [
        r
        for r in pipeline.client.watch([doc_id], timeout_s=120, after=mark)
        if isinstance(r, ResultRecord)
    ]
    assert [a.status for a in answers] == ["completed"]
    assert answers[0].document_text


def test_a_cancel_after_completion_changes_nothing(pipeline: Pipeline) -> None:
    case = generated_cases(1, seed=43, max_pages=4)[0]
    register(pipeline.server, case)
    pipeline.start_worker("worker")
    doc_id = pipeline.client.submit(case.data, filename=case.name)
    assert pipeline.results([doc_id])[doc_id].status == "completed"
    pipeline.client.cancel(doc_id)
    _drained(pipeline, "assemble", "page_results")
    assert [r.status for r in pipeline.records("results") if r.doc_id == doc_id] == ["completed"]


def test_a_finished_document_submitted_again_makes_no_model_request(pipeline: Pipeline) -> None:
    case = generated_cases(1, seed=47, max_pages=8)[0]
    register(pipeline.server, case)
    pipeline.start_worker("worker")
    doc_id = pipeline.client.submit(case.data, filename=case.name, metadata={"round": "1"})
    first = pipeline.results([doc_id])[doc_id]
    assert first.status == "completed"
    asked = pipeline.server.stats()["requests_total"]

    pipeline.client.submit(case.data, filename=case.name, metadata={"round": "2"}, reply_to="r2")
    pipeline.wait_log("worker", f"answered a new submission of {doc_id}")
    _drained(pipeline, "split", "documents")
    answers = [r for r in pipeline.records("results") if r.doc_id == doc_id]
    assert [(a.metadata, a.reply_to) for a in answers] == [
        ({"round": "1"}, None),
        ({"round": "2"}, "r2"),
    ]
    assert answers[1].model_copy(update={"metadata": {"round": "1"}, "reply_to": None}) == first
    assert pipeline.server.stats()["requests_total"] == asked  # no page, detect or merge
    assert sum(1 for r in pipeline.records("pages") if isinstance(r, PageTask)) == len(
        case.model_pages
    )  # the second request rendered no page
