"""Deferred text layers: pages rendered for the `vllm` engine without their text layer, which
a page the model fails takes afterwards (`Document.text_layer`), in place or through the render
pool's processes, and the direct driver filling a failed page from it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image

from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.errors import DamagedPage
from ocrflux.pages import RenderedPage, TableMode, defer_text_layer, text_layer_tables
from ocrflux.render import open_document
from ocrflux.render_pool import RenderPool
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from tests.scenarios import REPORT_PAGE_TEXTS, pdf_with_lines, register, twelve_page_report

REPORT = twelve_page_report()
FAILED = 10  # "Page eleven ends with a sentence." in the text layer and for the model
FAILED_TEXT = "Page eleven ends with a sentence."


def _pages(data: bytes, tables: TableMode, deferred: bool) -> list[RenderedPage]:
    with open_document(data, text_layer_tables=tables, defer_text_layer=deferred) as document:
        return list(document.pages())


@pytest.mark.parametrize("tables", ["ruled", "never"])
def test_deferred_pages_are_the_same_pngs_and_their_text_layers_come_later(
    tables: TableMode,
) -> None:
    eager = _pages(REPORT.data, tables, deferred=False)
    with open_document(REPORT.data, text_layer_tables=tables, defer_text_layer=True) as document:
        assert document.defer_text_layer
        deferred = list(document.pages())
        later = [document.text_layer(index) for index in range(document.page_count)]

    assert [p.png for p in deferred] == [p.png for p in eager]
    assert [(p.width, p.height) for p in deferred] == [(p.width, p.height) for p in eager]
    assert all(p.text_layer is None and p.text_layer_deferred for p in deferred)
    assert not any(p.text_layer_deferred for p in eager)
    assert later == [p.text_layer for p in eager]
    assert later[FAILED] == FAILED_TEXT
    assert later[8] is None  # the blank page has none, taken now or later
    # The same kind of value as eager rendering gives (a TextLayer telling its origin).
    assert [getattr(t, "origin", None) for t in later] == [
        getattr(p.text_layer, "origin", None) for p in eager
    ]


async def test_the_render_processes_render_as_the_document_was_opened() -> None:
    pool = RenderPool(1, min_pages=1)
    eager = _pages(REPORT.data, "never", deferred=False)
    try:
        for deferred in (True, False):
            document = open_document(
                REPORT.data, text_layer_tables="never", defer_text_layer=deferred
            )
            with document:
                renderer = await pool.open_renderer(document, REPORT.data, pages=12)
                assert renderer.in_pool
                try:
                    pages = [await renderer.render(index) for index in range(12)]
                    taken = await renderer.text_layer(FAILED)
                finally:
                    renderer.close()
            assert [p.png for p in pages] == [p.png for p in eager]
            assert [p.text_layer_deferred for p in pages] == [deferred] * 12
            expected = [None] * 12 if deferred else [p.text_layer for p in eager]
            assert [p.text_layer for p in pages] == expected
            assert taken == FAILED_TEXT
    finally:
        pool.close()


def test_a_repaired_pdf_takes_its_text_layers_while_rendering() -> None:
    """The damaged-page check needs the text layer: deferral does not apply to a repaired PDF."""
    intact = pdf_with_lines([[f"Section {n}, line {k}." for k in range(12)] for n in range(6)])
    cut = intact[: intact.rindex(b"endobj", 0, len(intact) // 2) + len(b"endobj")]
    with open_document(cut, defer_text_layer=True) as document:
        assert document.repaired and not document.defer_text_layer
        first = document.render_page(0)
        assert not first.text_layer_deferred
        assert first.text_layer is not None and "Section 0, line 0." in first.text_layer
        with pytest.raises(DamagedPage):
            document.render_page(5)


def test_an_image_has_no_text_layer_deferred_or_not() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), "white").save(buffer, format="PNG")
    with open_document(buffer.getvalue(), defer_text_layer=True) as document:
        page = document.render_page(0)
        assert (page.text_layer, page.text_layer_deferred) == (None, False)
        assert document.text_layer(0) is None


def test_a_closed_document_gives_no_text_layer() -> None:
    document = open_document(REPORT.data, defer_text_layer=True)
    document.close()
    with pytest.raises(ValueError, match="closed"):
        document.text_layer(0)


@pytest.mark.parametrize(
    ("engine", "vllm_configured", "deferred", "tables"),
    [
        ("vllm", True, True, "never"),
        ("vllm", False, True, "never"),
        ("local", True, False, "ruled"),
        ("auto", True, True, "never"),
        ("auto", False, False, "ruled"),
        (None, False, False, "ruled"),
    ],
)
def test_the_engine_decides_whether_text_layers_wait(
    engine: str | None, vllm_configured: bool, deferred: bool, tables: str
) -> None:
    assert defer_text_layer(engine, vllm_configured) is deferred
    assert text_layer_tables(engine, vllm_configured) == tables


@pytest.fixture
def failing_double(ocrflux_server: object) -> Iterator[object]:
    """The double, taught the report, answering page 11 with invalid JSON on every attempt."""
    keys = register(ocrflux_server, REPORT)
    ocrflux_server.add_fault("invalid_json", task="page", pages=[keys[FAILED]])  # type: ignore[attr-defined]
    yield ocrflux_server


@pytest.fixture
async def engine(failing_double: object) -> AsyncIterator[VllmEngine]:
    client = VllmClient(
        [failing_double.url],  # type: ignore[attr-defined]
        request_timeout_s=5,
        transport_retry_budget_s=5,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    async with client:
        yield VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)


@pytest.mark.parametrize("processes", [0, 1], ids=["in_place", "render_pool"])
async def test_a_page_the_model_fails_is_filled_from_its_text_layer(
    engine: VllmEngine, processes: int
) -> None:
    pool = RenderPool(processes, min_pages=1)
    try:
        result = await convert_document(
            REPORT.data,
            engine=engine,
            options=ConversionOptions(max_page_retries=2, skip_cross_page_merge=True),
            renders=pool,
        )
    finally:
        pool.close()

    assert result.status == "partial", result.error
    assert result.fallback_pages == [FAILED]
    assert result.page_sources[str(FAILED)] == "text_layer"
    assert result.page_texts[str(FAILED)] == FAILED_TEXT
    failed = result.pages[FAILED]
    assert failed.fallback and failed.attempts == 2
    assert failed.error is not None and failed.error.code == "task_failed"
    # Every other page is the model's: none of them was read from its text layer.
    others = {page: source for page, source in result.page_sources.items() if page != "10"}
    assert set(others.values()) == {"model"}
    for page, text in result.page_texts.items():
        if page != str(FAILED):
            assert text == REPORT_PAGE_TEXTS[page]
