"""The split stage through a render pool: the same records, in the same page order, as when it
renders in place, failed pages included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ocrflux.render_pool import RenderPool
from schemas.records import DocumentRequest, PageDone, PageTask, ProgressEvent
from streams.split import split_document
from tests.scenarios import pdf_with_lines

PAGES = [[f"Part {n}, line {k} of the split." for k in range(10)] for n in range(9)]
INTACT = pdf_with_lines(PAGES)
CUT_IN_HALF = INTACT[: INTACT.rindex(b"endobj", 0, len(INTACT) // 2) + len(b"endobj")]


@pytest.fixture(scope="module")
def pool() -> Iterator[RenderPool]:
    started = RenderPool(2, min_pages=1)  # every document through the processes
    asyncio.run(started.start())
    yield started
    started.close()


async def _no_fetch(url: str, max_bytes: int, sha256: str | None) -> bytes:
    raise AssertionError("the document is inline")


async def split(request: DocumentRequest, renders: RenderPool | None) -> list[PageTask | PageDone]:
    records: list[PageTask | PageDone] = []
    async for record in split_document(
        request, "doc", fetch=_no_fetch, max_bytes=10**7, max_pages=100, renders=renders
    ):
        if not isinstance(record, ProgressEvent):
            records.append(record)
    return records


@pytest.mark.parametrize("data", [INTACT, CUT_IN_HALF], ids=["intact", "cut-in-half"])
async def test_pooled_split_gives_the_in_place_records(pool: RenderPool, data: bytes) -> None:
    request = DocumentRequest(content=data, filename="part.pdf")
    in_place = await split(request, None)
    pooled = await split(request, pool)
    assert pooled == in_place
    assert [r.page if isinstance(r, PageTask) else r.result.index for r in pooled] == list(range(9))
    if data is CUT_IN_HALF:
        assert any(isinstance(r, PageDone) for r in pooled)
