"""The progress display: redrawn in place on a terminal, occasional lines otherwise."""

from __future__ import annotations

import io

from ocrflux.progress import BAR_WIDTH, ProgressBoard
from schemas.records import ProgressEvent, ResultRecord
from schemas.results import ErrorInfo


def _event(doc_id: str, stage: str, done: int, total: int = 4) -> ProgressEvent:
    return ProgressEvent(doc_id=doc_id, stage=stage, pages_done=done, pages_total=total)  # type: ignore[arg-type]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_without_a_terminal_on_stage_changes_and_at_intervals() -> None:
    out, clock = io.StringIO(), _Clock()
    board = ProgressBoard({"a": "a.pdf"}, out, tty=False, interval_s=5, clock=clock)
    board.draw()
    assert out.getvalue() == ""
    board.update(_event("a", "recognize", 1))
    clock.now = 1
    board.update(_event("a", "recognize", 2))  # too soon for another line
    clock.now = 7
    board.update(_event("a", "recognize", 3))
    board.update(_event("a", "recognize", 3))  # nothing new
    board.finish(ResultRecord(doc_id="a", status="completed", num_pages=4))
    lines = out.getvalue().splitlines()
    assert [line.split()[-2:] for line in lines] == [
        [f"[{'#' * (BAR_WIDTH // 4)}{'-' * (BAR_WIDTH * 3 // 4)}]", "recognize"],
        [f"[{'#' * (BAR_WIDTH * 3 // 4)}{'-' * (BAR_WIDTH // 4)}]", "recognize"],
        [f"[{'#' * BAR_WIDTH}]", "completed"],
    ]
    assert [line.split()[:3] for line in lines] == [
        ["a.pdf:", "page", "1/4"],
        ["a.pdf:", "page", "3/4"],
        ["a.pdf:", "page", "4/4"],
    ]


def test_redrawn_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    board = ProgressBoard({"a": "a.pdf", "b": "longer-name.pdf"}, out, tty=True)
    board.draw()
    board.update(_event("b", "recognize", 2))
    board.finish(
        ResultRecord(doc_id="a", status="failed", error=ErrorInfo(code="corrupt", message="x"))
    )
    board.update(_event("zzz", "recognize", 1))  # not ours: ignored
    text = out.getvalue()
    assert text.count("\x1b[2F") == 2  # back up over both lines before each redraw
    last_a, last_b = text.split("\x1b[2F")[-1].split("\n")[:2]
    assert last_a.endswith("failed (corrupt)")
    assert "page 2/4" in last_b and last_b.endswith("]  recognize")
    assert last_a.index("page") == last_b.index("page")  # labels padded to one width
    assert last_a.index("[") == last_b.index("[")  # and counts too: the bars line up


def test_one_document_as_a_page_callback_without_a_terminal() -> None:
    """What `ocrflux convert` shows: `name: page N/M`, a line when all pages are done."""
    out, clock = io.StringIO(), _Clock()
    board = ProgressBoard({"r.pdf": "r.pdf"}, out, tty=False, interval_s=5, clock=clock)
    progress = board.pages("r.pdf")
    for done in range(1, 13):
        clock.now = done * 0.1
        progress(done, 12)
    board.close()
    lines = out.getvalue().splitlines()
    assert [line.split("[")[0].rstrip() for line in lines] == [
        "r.pdf: page 1/12",
        "r.pdf: page 12/12",
    ]
    assert lines[-1].endswith(f"[{'#' * BAR_WIDTH}]")  # no stage named


def test_one_document_redrawn_on_a_terminal() -> None:
    out = io.StringIO()
    board = ProgressBoard({"r.pdf": "r.pdf"}, out, tty=True)
    progress = board.pages("r.pdf")
    progress(1, 2)
    progress(2, 2)
    text = out.getvalue()
    assert text.count("\x1b[1F") == 1  # the second draw backs up over the first
    assert text.endswith("\n") and "r.pdf: page 2/2" in text.split("\x1b[1F")[-1]
