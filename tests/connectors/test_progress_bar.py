"""Progress bars: redrawn in place on a terminal, occasional lines otherwise."""

from __future__ import annotations

import io

from connectors.progress_bar import BAR_WIDTH, ProgressBoard
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
        ["1/4", "recognize"],
        ["3/4", "recognize"],
        ["4/4", "completed"],
    ]
    assert f"[{'#' * BAR_WIDTH}]" in lines[-1]


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
    assert text.count("\x1b[2F") == 2  # back up over both bars before each redraw
    last_a, last_b = text.split("\x1b[2F")[-1].split("\n")[:2]
    assert last_a.endswith("failed (corrupt)")
    assert "2/4  recognize" in last_b
    assert last_a.index("[") == last_b.index("[")  # labels padded to one width
