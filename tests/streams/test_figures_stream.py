"""Figures through Kafka (`figures=crop`): the assembler crops them from the submitted document
(inline or by reference), stores them in the blob store and lists their references; the result
record itself never carries the PNGs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.client import OcrfluxClient
from ocrflux.figures import FIGURE_UNAVAILABLE, figure_pngs
from schemas.options import ConversionOptions
from streams.blobstore import BlobSettings
from tests.scenarios import (
    FIGURE_NAME,
    FIGURE_TEXT,
    FIGURE_TEXT_WITHOUT,
    assert_is_the_drawn_figure,
    figure_document,
    register,
)
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka


def _read_file_url(url: str) -> bytes:
    assert url.startswith("file://"), url
    return Path(url.removeprefix("file://")).read_bytes()


def test_figures_are_cropped_stored_and_referenced(pipeline: Pipeline) -> None:
    case = figure_document()
    register(pipeline.server, case)
    pipeline.start_worker("worker")
    crop = ConversionOptions(figures="crop")
    inline = pipeline.client.submit(case.data, crop, filename=case.name)
    # The same document by reference (claim check): the assembler fetches it from the store.
    by_ref_client = OcrfluxClient(
        pipeline.kafka,
        inline_limit=0,
        blob_settings=BlobSettings(ocrflux_blob_dir=pipeline.blob_dir),
    )
    with by_ref_client:
        by_ref = by_ref_client.submit(case.data, crop, doc_id="figures-by-ref", filename=case.name)
    plain = pipeline.client.submit(case.data, filename=case.name)
    results = pipeline.results([inline, by_ref, plain])

    for doc_id in (inline, by_ref):
        result = results[doc_id]
        assert result.status == "completed", result.error
        assert result.warnings == []
        assert result.document_text == FIGURE_TEXT.format(link=FIGURE_NAME)
        [figure] = result.figures
        assert (figure.number, figure.page, figure.name) == (1, 1, FIGURE_NAME)
        assert figure.data is None and figure.ref is not None
        assert figure.ref.endswith(f"/{FIGURE_NAME}") and str(pipeline.blob_dir) in figure.ref
        assert_is_the_drawn_figure(_read_file_url(figure.ref))
        pngs, warnings = asyncio.run(figure_pngs(result, _fetch))
        assert warnings == [] and set(pngs) == {1}
    assert results[plain].document_text == FIGURE_TEXT_WITHOUT and results[plain].figures == []
    # Figures cost no model request: 3 documents x (3 pages, 2 detections).
    stats = pipeline.server.stats()["by_task"]
    assert stats == {"page": {"200": 9}, "detect": {"200": 6}}


async def _fetch(url: str) -> bytes:
    return _read_file_url(url)


def test_a_request_gone_from_the_topic_costs_the_figures_not_the_document(
    pipeline: Pipeline,
) -> None:
    """The figures' source is read back from the documents topic; when the record has gone
    (retention), the result still arrives, with a warning per figure."""
    case = figure_document()
    register(pipeline.server, case)
    pipeline.start_worker("worker", roles="split,recognize")
    doc_id = pipeline.client.submit(case.data, ConversionOptions(figures="crop"))
    pipeline.server.wait_for(completed=3, timeout=60)  # the 3 pages (the assembler detects)
    _delete_documents(pipeline)
    pipeline.start_worker("assembler", roles="assemble")
    result = pipeline.results([doc_id])[doc_id]
    assert result.status == "completed"
    assert result.document_text == FIGURE_TEXT.format(link=FIGURE_NAME)
    assert [w.code for w in result.warnings] == [FIGURE_UNAVAILABLE]
    assert result.figures[0].ref is None


def _delete_documents(pipeline: Pipeline) -> None:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": pipeline.kafka.kafka_bootstrap_servers})
    name = pipeline.kafka.topics.documents
    topic = admin.list_topics(name, timeout=10).topics[name]
    ends = [TopicPartition(name, p, -1) for p in topic.partitions]  # -1: the high watermark
    for future in admin.delete_records(ends).values():
        future.result(timeout=30)
