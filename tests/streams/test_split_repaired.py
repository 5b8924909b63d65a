"""The stream processor flags a repaired PDF like the direct driver: the split stage puts the
`repaired` warning in `DocumentInfo` and turns pages that came out blank into `damaged_page`
fallback pages, and the assembler's result carries the warning and is `partial`."""

from __future__ import annotations

from schemas.records import DocumentRequest, PageDone, PageTask, PairsDetected, ResultRecord
from schemas.results import PageResult
from streams.assembly import Assembler, DetectJob
from streams.split import split_document
from tests.scenarios import pdf_with_lines

PAGES = [[f"Section {n}, line {k} of the annual report." for k in range(12)] for n in range(6)]
INTACT = pdf_with_lines(PAGES)
# The last object boundary before the middle (see tests/ocrflux/test_convert_repaired.py).
CUT_IN_HALF = INTACT[: INTACT.rindex(b"endobj", 0, len(INTACT) // 2) + len(b"endobj")]


async def _no_fetch(url: str, max_bytes: int, sha256: str | None) -> bytes:
    raise AssertionError("the document is inline")


async def _split(data: bytes) -> list[PageTask | PageDone]:
    request = DocumentRequest(content=data, filename="report.pdf")
    records = []
    async for record in split_document(
        request, "doc", fetch=_no_fetch, max_bytes=10**7, max_pages=100
    ):
        if isinstance(record, PageTask | PageDone):
            records.append(record)
    return records


def _assemble(records: list[PageTask | PageDone]) -> ResultRecord:
    """The recognize role answers each page with its text layer; detections find no pairs."""
    assembler = Assembler({})
    queue: list[PageDone | PairsDetected] = [
        PageDone(
            doc_id=r.doc_id,
            info=r.info,
            result=PageResult(index=r.page, elements=[r.text_layer or ""], source="text_layer"),
        )
        if isinstance(r, PageTask)
        else r
        for r in records
    ]
    at = 1000.0
    while queue:
        at += 1
        step = assembler.apply(queue.pop(0), partition=0, at=at)
        if step.result is not None:
            return step.result
        queue += [
            PairsDetected(doc_id=job.doc_id, first=job.first, pairs=[])
            for job in step.jobs
            if isinstance(job, DetectJob)
        ]
    raise AssertionError("no result")


async def test_split_and_assembly_flag_a_pdf_cut_in_half() -> None:
    records = await _split(CUT_IN_HALF)

    assert len(records) == 6
    assert {w.code for r in records for w in r.info.warnings} == {"repaired"}
    damaged = [r.result.index for r in records if isinstance(r, PageDone)]
    assert damaged and damaged == list(range(damaged[0], 6))
    assert {r.result.error.code for r in records if isinstance(r, PageDone) and r.result.error} == {
        "damaged_page"
    }

    result = _assemble(records)
    assert [w.code for w in result.warnings] == ["repaired"]
    assert result.status == "partial"
    assert result.fallback_pages == damaged
    assert result.error is not None and result.error.code == "damaged_page"


async def test_an_intact_pdf_splits_without_warnings() -> None:
    records = await _split(INTACT)

    assert all(isinstance(r, PageTask) and r.info.warnings == [] for r in records)
    result = _assemble(records)
    assert result.status == "completed" and result.warnings == []
