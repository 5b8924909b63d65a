"""Deferred text layers through Kafka: split renders pages for the `vllm` engine without their
text layer, and recognize takes a failed page's text layer from the request read back from the
documents topic (inline or claim-checked); when the request is gone the page stays a failed page
with its error, and the document still completes."""

from __future__ import annotations

import pytest

from connectors.client import OcrfluxClient
from schemas.options import ConversionOptions
from schemas.records import PageTask
from streams.blobstore import BlobSettings
from tests.scenarios import REPORT_PAGE_TEXTS, register, twelve_page_report
from tests.streams.fixtures import Pipeline
from tests.streams.test_figures_stream import _delete_documents

pytestmark = pytest.mark.kafka

REPORT = twelve_page_report()
FAILED = 10
FAILED_TEXT = "Page eleven ends with a sentence."
OPTIONS = ConversionOptions(max_page_retries=2, skip_cross_page_merge=True)


def _fail_one_page(pipeline: Pipeline) -> None:
    keys = register(pipeline.server, REPORT)
    pipeline.server.add_fault("invalid_json", task="page", pages=[keys[FAILED]])


def test_a_failed_page_takes_its_text_layer_from_the_request(pipeline: Pipeline) -> None:
    _fail_one_page(pipeline)
    pipeline.start_worker("worker")
    inline = pipeline.client.submit(REPORT.data, OPTIONS, filename=REPORT.name)
    by_ref_client = OcrfluxClient(
        pipeline.kafka,
        inline_limit=0,  # the request only refers to the bytes: recognize fetches them
        blob_settings=BlobSettings(ocrflux_blob_dir=pipeline.blob_dir),
    )
    with by_ref_client:
        by_ref = by_ref_client.submit(REPORT.data, OPTIONS, doc_id="by-ref", filename=REPORT.name)
    results = pipeline.results([inline, by_ref])

    for doc_id in (inline, by_ref):
        result = results[doc_id]
        assert result.status == "partial", (doc_id, result.error)
        assert result.fallback_pages == [FAILED]
        assert result.page_sources[str(FAILED)] == "text_layer", doc_id
        assert result.page_texts[str(FAILED)] == FAILED_TEXT
        failed = result.pages[FAILED]
        assert failed.error is not None and failed.error.code == "task_failed"
        assert {s for p, s in result.page_sources.items() if p != str(FAILED)} == {"model"}
        for page, text in result.page_texts.items():
            if page != str(FAILED):
                assert text == REPORT_PAGE_TEXTS[page]
    # Split sent no text layer: every page task says it was left for later.
    tasks = [r for r in pipeline.records("pages") if isinstance(r, PageTask)]
    assert len(tasks) == 24
    assert all(t.text_layer is None and t.text_layer_deferred for t in tasks)


def test_a_request_gone_from_the_topic_leaves_the_failed_page_without_text(
    pipeline: Pipeline,
) -> None:
    _fail_one_page(pipeline)
    splitter = "splitter"
    pipeline.start_worker(splitter, roles="split")
    doc_id = pipeline.client.submit(REPORT.data, OPTIONS, filename=REPORT.name)
    pipeline.wait_log(splitter, "page records handed to Kafka")
    _delete_documents(pipeline)
    pipeline.start_worker("recognizer", roles="recognize,assemble")
    result = pipeline.results([doc_id])[doc_id]

    assert result.status == "partial", result.error
    assert result.fallback_pages == [FAILED]
    assert result.page_sources[str(FAILED)] == "none"
    assert result.page_texts.get(str(FAILED), "") == ""
    assert FAILED_TEXT not in result.document_text
    failed = result.pages[FAILED]
    assert failed.error is not None and failed.error.code == "task_failed"  # kept
    assert {s for p, s in result.page_sources.items() if p != str(FAILED)} == {"model"}
    log = pipeline.processes.log("recognizer")
    assert f"page {doc_id}/{FAILED} failed and its text layer cannot be read" in log
    assert "is no longer there" in log


def test_a_local_recognizer_takes_the_text_layers_split_left_out(pipeline: Pipeline) -> None:
    """A mixed deployment: split renders for vllm, a worker with the local engine recognizes,
    and that engine reads every page from its text layer, so it takes them first."""
    pipeline.start_worker("splitter", roles="split")
    pipeline.start_worker("local", roles="recognize,assemble", OCRFLUX_ENGINE="local")
    doc_id = pipeline.client.submit(REPORT.data, OPTIONS, filename=REPORT.name)
    result = pipeline.results([doc_id])[doc_id]

    assert result.status == "completed", result.error
    assert result.engine == "local"
    text_pages = {str(page) for page in range(12) if page != 8}  # page 9 is blank: OCR'd
    assert {p for p, s in result.page_sources.items() if s == "text_layer"} == text_pages
    assert result.page_texts[str(FAILED)] == FAILED_TEXT
    assert pipeline.server.stats()["requests_total"] == 0  # the model was never asked
