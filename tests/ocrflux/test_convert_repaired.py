"""A damaged PDF that PyMuPDF repairs is flagged: the result warns `repaired`, and pages that
came out blank are fallback pages (`damaged_page`), so the result is `partial`, never a
`completed` with silently lost content. Through the direct driver and the OCRFlux-3B double."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.errors import DamagedPage
from ocrflux.render import open_document
from ocrflux.vllm_client import VllmClient
from tests.scenarios import page_images, pdf_with_lines

PAGES = [[f"Section {n}, line {k} of the annual report." for k in range(12)] for n in range(6)]
INTACT = pdf_with_lines(PAGES)
# Cut at the last object boundary before the middle: a cut inside an object's dictionary may
# leave nothing MuPDF can repair (that is `corrupt`, tested in test_render.py).
CUT_IN_HALF = INTACT[: INTACT.rindex(b"endobj", 0, len(INTACT) // 2) + len(b"endobj")]


def _text(page: int) -> str:
    return "\n".join(PAGES[page])


def _surviving_pages(data: bytes) -> dict[int, bytes]:
    """The PNG of each page of a repaired file that still renders (its pixels may differ from
    the intact page's where part of its content was lost)."""
    pngs = {}
    with open_document(data) as document:
        for index in range(document.page_count):
            try:
                pngs[index] = document.render_page(index).png
            except DamagedPage:
                continue
    return pngs


@pytest.fixture
async def engine(ocrflux_server: object) -> AsyncIterator[VllmEngine]:
    pages = list(enumerate(page_images(INTACT))) + list(_surviving_pages(CUT_IN_HALF).items())
    for page, png in pages:
        ocrflux_server.register_page(png, _text(page))  # type: ignore[attr-defined]
    client = VllmClient([ocrflux_server.url], request_timeout_s=5)  # type: ignore[attr-defined]
    async with client:
        yield VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)


async def test_a_pdf_cut_in_half_is_partial_with_a_repaired_warning(engine: VllmEngine) -> None:
    result = await convert_document(
        CUT_IN_HALF, engine=engine, source="cut.pdf", page_concurrency=2
    )

    assert [w.code for w in result.warnings] == ["repaired"]
    assert "damaged and has been repaired" in result.warnings[0].message
    assert result.status == "partial"
    assert result.error is not None and result.error.code == "damaged_page"
    assert result.num_pages == 6
    # The pages whose content lay in the lost half are listed; the others are recognized.
    lost = result.fallback_pages
    assert lost and lost == list(range(lost[0], 6)), lost
    assert {result.page_sources[str(p)] for p in lost} == {"none"}
    for page in range(lost[0]):
        assert result.page_sources[str(page)] == "model"
        assert result.page_texts[str(page)] == _text(page)


async def test_an_intact_pdf_has_no_warnings(engine: VllmEngine) -> None:
    result = await convert_document(INTACT, engine=engine, page_concurrency=2)

    assert result.status == "completed", result.error
    assert result.warnings == []
    assert result.fallback_pages == []
    assert result.page_texts == {str(p): _text(p) for p in range(6)}
