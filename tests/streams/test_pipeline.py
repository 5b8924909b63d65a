"""The stream processor end to end on the real broker: worker processes, the client SDK and the
OCRFlux-3B test double."""

from __future__ import annotations

import asyncio
import collections
import urllib.request

import pytest

from deploy.kafka_broker import free_port
from schemas.records import DlqRecord, PageDone, ResultRecord
from tests.scenarios import generated_cases, register
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka

CASES = generated_cases(20, seed=7)


def _register_all(pipeline: Pipeline) -> None:
    for case in CASES:
        register(pipeline.server, case)


def test_twenty_documents_match_the_direct_driver_byte_for_byte(pipeline: Pipeline) -> None:
    _register_all(pipeline)
    expected = {case.name: asyncio.run(pipeline.direct(case)) for case in CASES}
    metrics_port = free_port()
    pipeline.start_worker("worker", OCRFLUX_METRICS_PORT=str(metrics_port))
    ids = {case.name: pipeline.client.submit(case.data, filename=case.name) for case in CASES}
    results = pipeline.results(list(ids.values()))
    assert len(results) == 20
    for name, doc_id in ids.items():
        result, direct = results[doc_id], expected[name]
        assert result.status == direct.status == "completed"
        assert result.document_text == direct.document_text, name
        assert result.page_texts == direct.page_texts
        assert result.num_pages == direct.num_pages
        assert result.source == name
    pages = sum(len(c.model_pages) for c in CASES)
    assert sum(r.num_pages for r in results.values()) == pages

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    assert f'ocrflux_pages_recognized_total{{source="model"}} {pages}.0' in metrics
    assert 'ocrflux_documents_total{status="completed"} 20.0' in metrics
    assert "ocrflux_vllm_page_latency_seconds_count" in metrics


def test_worker_killed_midway_loses_nothing_and_repeats_identically(pipeline: Pipeline) -> None:
    _register_all(pipeline)
    pipeline.server.configure(service_time=0.02, capacity=4)  # long enough to kill midway
    total_pages = sum(len(case.model_pages) for case in CASES)
    worker = pipeline.start_worker("first")
    ids = [pipeline.client.submit(case.data, filename=case.name) for case in CASES]

    done: dict[str, int] = {}
    for event in pipeline.client.progress(timeout_s=120):
        done[event.doc_id] = max(done.get(event.doc_id, 0), event.pages_done)
        if sum(done.values()) >= total_pages // 2:
            break
    pipeline.processes.kill(worker)  # SIGKILL: no shutdown, no final commit
    assert sum(done.values()) < total_pages, "everything finished before the kill"

    pipeline.start_worker("second")
    results = pipeline.results(ids)
    assert {r.status for r in results.values()} == {"completed"}

    emitted = collections.defaultdict(set)
    for key, value in pipeline.raw("results"):
        emitted[key].add(value)
    assert set(emitted) == set(ids)
    repeated = {doc_id: values for doc_id, values in emitted.items() if len(values) > 1}
    assert repeated == {}, "a repeated result for a doc_id differs"


def test_bad_input_gets_a_failed_result_and_a_dlq_record(pipeline: Pipeline) -> None:
    from tests.ocrflux.docgen import make_pdf, make_zip

    good = CASES[0]
    register(pipeline.server, good)
    pipeline.start_worker("worker", MAX_PAGES="5")
    bad = {
        "corrupt": b"%PDF-1.7\n" + bytes(range(256)) * 8,
        "encrypted": make_pdf(["secret"], user_password="u", owner_password="o"),
        "empty": b"",
        "unsupported_type": make_zip({"a.txt": b"hello"}),
        "too_many_pages": make_pdf([f"page {n}" for n in range(6)]),
    }
    ids = {code: pipeline.client.submit(data, filename=f"{code}.pdf") for code, data in bad.items()}
    good_id = pipeline.client.submit(good.data, filename=good.name)

    results = pipeline.results([*ids.values(), good_id])
    for code, doc_id in ids.items():
        result = results[doc_id]
        assert result.status == "failed", code
        assert result.error is not None and result.error.code == code
        assert result.source == f"{code}.pdf"
    assert results[good_id].status == "completed"
    dlq = [r for r in pipeline.records("dlq") if isinstance(r, DlqRecord)]
    assert sorted(r.error_code for r in dlq) == sorted(ids)
    assert {r.doc_id for r in dlq} == set(ids.values())
    assert all(r.stage == "split" and r.topic.endswith(".documents") for r in dlq)


def test_two_recognize_workers_share_one_long_document(pipeline: Pipeline) -> None:
    case = next(c for c in generated_cases(3, seed=60, max_pages=60) if len(c.model_pages) == 60)
    register(pipeline.server, case)
    expected = asyncio.run(pipeline.direct(case))
    pipeline.server.configure(service_time=0.02, capacity=8)
    pipeline.start_worker("main")
    pipeline.start_worker("helper", roles="recognize")
    # The helper's join rebalances the recognize group: the main worker is assigned twice.
    pipeline.wait_log("main", "recognize: assigned", count=2)

    doc_id = pipeline.client.submit(case.data, filename=case.name)
    result = pipeline.results([doc_id])[doc_id]
    assert result.document_text == expected.document_text
    workers = collections.Counter(
        r.worker for r in pipeline.records("page_results") if isinstance(r, PageDone)
    )
    assert set(workers) == {"main", "helper"}, workers
    assert sum(workers.values()) >= 60


def test_a_300_page_document_never_exceeds_the_record_limit(pipeline: Pipeline) -> None:
    case = generated_cases(2, seed=300, max_pages=300)[1]
    assert len(case.model_pages) == 300
    register(pipeline.server, case)
    limit = pipeline.kafka.kafka_message_max_bytes
    pipeline.start_worker("worker")
    doc_id = pipeline.client.submit(case.data, filename=case.name)
    result = pipeline.results([doc_id], timeout_s=300)[doc_id]
    assert result.status == "completed" and result.num_pages == 300
    for topic in ("documents", "pages", "page_results", "results", "progress"):
        sizes = [len(value) for _, value in pipeline.raw(topic)]
        assert sizes and max(sizes) <= limit, topic
    assert isinstance(result, ResultRecord)


def test_a_finished_document_submitted_again_is_answered_with_its_result(
    pipeline: Pipeline,
) -> None:
    case = CASES[1]
    register(pipeline.server, case)
    pipeline.start_worker("worker")
    doc_id = pipeline.client.submit(case.data, filename=case.name, metadata={"round": "1"})
    first = pipeline.results([doc_id])[doc_id]
    assert pipeline.client.submit(case.data, filename=case.name, metadata={"round": "2"}) == doc_id
    pipeline.wait_log("worker", f"answered a new submission of {doc_id}")

    answers = [r for r in pipeline.records("results") if r.doc_id == doc_id]
    assert [r.metadata for r in answers] == [{"round": "1"}, {"round": "2"}]
    assert answers[0] == first
    assert answers[1].model_copy(update={"metadata": first.metadata}) == first
    assert first.status == "completed" and first.document_text
