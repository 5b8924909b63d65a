"""The assembler's answer to cancels (on a plain dict store), and the cancels view's rule: a
cancel covers the submissions made before it."""

from __future__ import annotations

from schemas.records import DocumentCancelled
from streams.assembly import Assembler, EmittedDoc, Step
from streams.cancels import cancelled_from_info, covers
from tests.streams.test_assembly import INFO, page_records, results, run, submitted


def _cancelled(submission: str, stage: str = "recognize") -> DocumentCancelled:
    info = INFO.model_copy(update={"submission": submission, "metadata": {"team": "ops"}})
    return cancelled_from_info("doc", info, stage)  # type: ignore[arg-type]


def test_a_cancel_midway_emits_one_cancelled_result_and_drops_the_pages() -> None:
    store: dict = {}
    assembler = Assembler(store)
    pages = submitted(page_records(), "0@7", team="ops")
    run(assembler, pages[:5])
    step = assembler.apply(_cancelled("0@7"), partition=0, at=2000)
    assert step.result is not None and step.result.status == "cancelled"
    assert step.result.error is not None and step.result.error.code == "cancelled"
    assert step.result.metadata == {"team": "ops"} and step.result.num_pages == 12
    assert step.progress is not None and step.progress.stage == "cancelled"
    assert step.progress.pages_done == 5
    assembler.mark_emitted(step, (1, 9))
    assert list(store) == ["doc"]  # the stored pages are gone
    assert store["doc"] == EmittedDoc(
        status="cancelled", submission="0@7", result_partition=1, result_offset=9
    )
    # Every later record of that submission: the other stages' cancels, late pages.
    assert assembler.apply(_cancelled("0@7", "split"), partition=0, at=2001) == Step()
    for record in pages[5:]:
        assert assembler.apply(record, partition=0, at=2002) == Step()


def test_a_cancel_before_any_page_still_answers() -> None:
    store: dict = {}
    step = Assembler(store).apply(_cancelled("0@7", "split"), partition=0, at=1)
    assert step.result is not None and step.result.status == "cancelled"


def test_a_cancel_after_completion_changes_nothing() -> None:
    store: dict = {}
    assembler = Assembler(store)
    steps, _ = run(assembler, submitted(page_records(), "0@7"), position=(0, 3))
    assert [r.status for r in results(steps)] == ["completed"]
    assert assembler.apply(_cancelled("0@7"), partition=0, at=5000) == Step()
    assert assembler.apply(_cancelled("1@2", "split"), partition=0, at=5001) == Step()
    assert store["doc"].status == "completed"


def test_a_cancelled_document_submitted_again_is_assembled_again() -> None:
    store: dict = {}
    assembler = Assembler(store)
    assembler.mark_emitted(assembler.apply(_cancelled("0@7"), partition=0, at=1), (0, 1))
    again = submitted(page_records(), "0@8")
    step = assembler.apply(again[0], partition=0, at=2)
    assert step.restart  # the agent forgets the marker and applies the page again
    assembler.forget("doc")
    steps, _ = run(assembler, again)
    assert [r.status for r in results(steps)] == ["completed"]


def test_a_late_cancel_of_an_older_submission_leaves_the_new_one_alone() -> None:
    store: dict = {}
    assembler = Assembler(store)
    assembler.mark_emitted(assembler.apply(_cancelled("0@7"), partition=0, at=1), (0, 1))
    again = submitted(page_records(), "0@8")
    assert assembler.apply(again[0], partition=0, at=2).restart
    assembler.forget("doc")
    run(assembler, again[:3])
    # A page of the first submission that recognize skipped late, after the second began:
    assert assembler.apply(_cancelled("0@7"), partition=0, at=3) == Step()
    steps, _ = run(assembler, again[3:])
    assert [r.status for r in results(steps)] == ["completed"]


def test_a_cancel_covers_the_submissions_made_before_it() -> None:
    assert covers(100.0, 99.0) and covers(100.0, 100.0)
    assert covers(100.0, None)  # a request without a time counts as older
    assert not covers(100.0, 101.0)  # submitted again after the cancel
    assert not covers(None, 1.0)  # never cancelled
