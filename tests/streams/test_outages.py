"""The stream processor waits out what fails around it, on the real broker with worker processes
and the OCRFlux-3B test double: a model outage longer than the retry budget, a broker down for
longer than the producer's delivery timeout. Every document completes, none is lost, none is
degraded."""

from __future__ import annotations

import asyncio
import collections

import pytest

from schemas.records import ResultRecord
from tests.scenarios import figure_document, generated_cases, register
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka

CASES = generated_cases(6, seed=23)


def _register_all(pipeline: Pipeline) -> dict[str, object]:
    for case in CASES:
        register(pipeline.server, case)
    return {case.name: asyncio.run(pipeline.direct(case)) for case in CASES}


def _assert_like_the_direct_driver(
    pipeline: Pipeline, ids: dict[str, str], expected: dict[str, object]
) -> None:
    results = pipeline.results(list(ids.values()))
    for name, doc_id in ids.items():
        result, direct = results[doc_id], expected[name]
        assert result.status == "completed", (name, result.error)
        assert result.fallback_pages == []
        assert result.document_text == direct.document_text, name  # type: ignore[attr-defined]
    emitted = collections.defaultdict(set)
    for key, value in pipeline.raw("results"):
        emitted[key].add(value)
    assert set(emitted) == set(ids.values())
    assert {k: v for k, v in emitted.items() if len(v) > 1} == {}, "differing duplicates"


def test_a_model_outage_longer_than_the_retry_budget_waits_instead_of_degrading(
    pipeline: Pipeline,
) -> None:
    expected = _register_all(pipeline)
    pipeline.server.set_health("down")  # refuses every request, /health included
    pipeline.start_worker("worker", VLLM_RETRY_BUDGET_S="1")
    ids = {case.name: pipeline.client.submit(case.data, filename=case.name) for case in CASES}

    # The budget runs out: the recognize role stops taking pages, and no result comes out.
    pipeline.wait_log("worker", "recognize: stopped taking records")
    assert list(pipeline.client.results(list(ids.values()), wait=False, timeout_s=10)) == []
    pipeline.server.set_health("ok")
    pipeline.wait_log("worker", "recognize: resumed taking records")
    _assert_like_the_direct_driver(pipeline, ids, expected)


def test_a_broker_down_longer_than_the_delivery_timeout_loses_nothing(
    broker_pipeline: Pipeline,
) -> None:
    pipeline = broker_pipeline
    assert pipeline.broker is not None
    expected = _register_all(pipeline)
    pipeline.server.configure(service_time=0.05, capacity=2)  # still recognizing at the stop
    pipeline.start_worker("worker", KAFKA_DELIVERY_TIMEOUT_S="2")
    ids = {case.name: pipeline.client.submit(case.data, filename=case.name) for case in CASES}
    total = sum(len(case.model_pages) for case in CASES)
    done: dict[str, int] = {}
    for event in pipeline.client.progress(timeout_s=120):
        done[event.doc_id] = max(done.get(event.doc_id, 0), event.pages_done)
        if sum(done.values()) >= 3:
            break
    pipeline.broker.stop()
    # Records the worker hands over now expire undelivered: wait until it says so.
    pipeline.wait_log("worker", "not acknowledged by Kafka")
    assert sum(done.values()) < total, "everything finished before the broker stopped"
    pipeline.broker.start()
    _assert_like_the_direct_driver(pipeline, ids, expected)
    log = pipeline.processes.log("worker")
    assert log.count("\n") < 2000, "the outage flooded the worker's log"


def test_a_partial_result_is_not_final_resubmitting_recognizes_the_document_again(
    pipeline: Pipeline,
) -> None:
    case = CASES[0]
    keys = register(pipeline.server, case)
    broken = keys[len(keys) // 2]
    pipeline.server.add_fault("invalid_json", pages=[broken])  # the model garbles one page
    pipeline.start_worker("worker")
    doc_id = pipeline.client.submit(case.data, filename=case.name)
    first = pipeline.results([doc_id])[doc_id]
    assert first.status == "partial" and first.fallback_pages == [len(keys) // 2]

    pipeline.server.clear_faults()
    asked_before = _page_requests(pipeline, broken)
    mark = pipeline.client.mark()
    assert pipeline.client.submit(case.data, filename=case.name) == doc_id
    answers = [
        r
        for r in pipeline.client.watch([doc_id], timeout_s=120, after=mark)
        if isinstance(r, ResultRecord)
    ]
    assert [a.status for a in answers] == ["completed"]
    assert answers[0].fallback_pages == []
    assert _page_requests(pipeline, broken) > asked_before  # the page was asked for again


def _page_requests(pipeline: Pipeline, page_key: str) -> int:
    return sum(
        1 for r in pipeline.server.requests() if r["task"] == "page" and r["page"] == page_key
    )


def test_a_failed_merge_detection_is_a_warning_on_the_result(pipeline: Pipeline) -> None:
    """As in the direct driver: a page pair whose detection had no valid answer is not merged,
    and the result says so instead of passing for a clean one."""
    case = figure_document()
    register(pipeline.server, case)
    pipeline.server.add_fault("garbage_pairs", task="detect", count=2)
    pipeline.start_worker("worker")
    doc_id = pipeline.client.submit(case.data, filename=case.name)
    result = pipeline.results([doc_id])[doc_id]
    assert result.status == "completed"
    assert "A paragraph that runs onto\n\nthe next page." in result.document_text
    assert [w.code for w in result.warnings] == ["merge_detection_failed"] * 2
    assert [w.message[:14] for w in result.warnings] == ["pages 1 and 2:", "pages 2 and 3:"]
