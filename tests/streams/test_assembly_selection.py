"""The assembler with a selection that skips pages: it waits for the selected pages only, and
detects merges only between selected pages that are neighbours in the document."""

from __future__ import annotations

from schemas.options import ConversionOptions
from schemas.records import DocumentInfo, PageDone
from schemas.results import PageResult
from streams.assembly import Assembler, DetectJob
from tests.formats import SELECTED, SELECTED_TEXT, SELECTION
from tests.scenarios import REPORT_PAGE_TEXTS, twelve_page_report
from tests.streams.test_assembly import results, run

CASE = twelve_page_report()
INFO = DocumentInfo(
    first_page=0,
    stop_page=8,
    num_pages=12,
    options=ConversionOptions(pages=SELECTION),
    source="report.pdf",
    engine="vllm",
)


def records() -> list[PageDone]:
    return [
        PageDone(doc_id="sel", info=INFO, result=PageResult(index=p, elements=CASE.elements(p)))
        for p in SELECTED
    ]


def test_the_result_of_a_selection_has_its_pages_and_only_their_merges() -> None:
    steps, log = run(Assembler({}), records())
    (result,) = results(steps)
    assert result.document_text == SELECTED_TEXT
    assert result.page_texts == {str(p): REPORT_PAGE_TEXTS[str(p)] for p in SELECTED}
    detected = sorted(record.first for record in log if not isinstance(record, PageDone))
    assert detected == [0, 1, 6]  # never pages 2 and 6 (3 and 7, 1-based): not neighbours
    progress = [s.progress for s in steps if s.progress is not None]
    assert {p.pages_total for p in progress} == {5}


def test_pages_3_and_7_are_never_paired_whatever_the_order() -> None:
    assembler = Assembler({})
    pages = {record.result.index: record for record in records()}
    jobs = []
    for page in (6, 2, 7, 0, 1):
        jobs += assembler.apply(pages[page], partition=0, at=float(page)).jobs
    # the last page asks again for detections not answered yet (the agent skips those in flight)
    assert {job.first for job in jobs if isinstance(job, DetectJob)} == {0, 1, 6}
