"""The one progress display of the command line: a line per document, `name: page N/M [bar]
stage`, redrawn in place on a terminal and written as occasional lines otherwise (logs, CI).

`ocrflux convert` shows its one document through `ProgressBoard.pages` (a `ProgressCallback`);
`ocrflux submit --wait` feeds the board the progress events and results it reads from Kafka.
No dependencies beyond the standard library and the records of `schemas/`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from schemas.records import ProgressEvent, ResultRecord

__all__ = ["BAR_WIDTH", "LINE_INTERVAL_S", "ProgressBoard"]

BAR_WIDTH = 24
#: Room for the page count ("1234/1234"), so that the bars of several documents line up.
_COUNT_WIDTH = 9
#: Without a terminal, a document's line is repeated at most this often while its pages advance
#: (a line is written at once when its stage changes, its pages are all done or it finishes).
LINE_INTERVAL_S = 5.0
_FINISHED = ("completed", "partial", "failed", "cancelled")


@dataclass
class _Row:
    label: str
    stage: str = "queued"
    done: int = 0
    total: int = 0
    note: str = ""
    printed_at: float | None = None
    printed_state: tuple[str, int, int] | None = None

    @property
    def finished(self) -> bool:
        return self.stage in _FINISHED


class ProgressBoard:
    """A line for each document keyed in `labels` (key -> the name shown)."""

    def __init__(
        self,
        labels: Mapping[str, str],
        stream: TextIO,
        *,
        tty: bool | None = None,
        interval_s: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rows = {key: _Row(label) for key, label in labels.items()}
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._interval_s = interval_s
        self._clock = clock
        self._drawn = 0
        self._width = max((len(label) for label in labels.values()), default=0)

    def draw(self) -> None:
        """Show every line now (on a terminal; lines are only written as documents advance)."""
        if self._tty:
            self._redraw()

    def advance(self, key: str, done: int, total: int, stage: str = "") -> None:
        """`done` of `total` pages of document `key`, in `stage` (none shown when empty)."""
        row = self._rows.get(key)
        if row is None or row.finished:
            return
        row.stage, row.done, row.total = stage, done, total
        self._show(row)

    def pages(self, key: str) -> Callable[[int, int], None]:
        """A `ProgressCallback` (pages done, pages in all) for document `key`."""
        return lambda done, total: self.advance(key, done, total)

    def update(self, event: ProgressEvent) -> None:
        self.advance(event.doc_id, event.pages_done, event.pages_total, event.stage)

    def finish(self, result: ResultRecord) -> None:
        row = self._rows.get(result.doc_id)
        if row is None:
            return
        row.stage = result.status
        row.total = row.total or result.num_pages
        if result.status != "failed":
            row.done = row.total
        row.note = f"({result.error.code})" if result.error else ""
        self._show(row)

    def close(self) -> None:
        """End the board (every line ends in a newline: the cursor is already below them)."""
        self._stream.flush()

    def line(self, row: _Row) -> str:
        if row.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * row.done // row.total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            count = f"{row.done}/{row.total}"
        else:
            bar, count = "-" * BAR_WIDTH, "?/?"
        name = f"{row.label}:"
        text = f"{name:<{self._width + 1}} page {count:<{_COUNT_WIDTH}} [{bar}]  {row.stage}"
        return f"{text.rstrip()} {row.note}".rstrip()

    def _show(self, row: _Row) -> None:
        if self._tty:
            self._redraw()
            return
        now = self._clock()
        state = (row.stage, row.done, row.total)
        if state == row.printed_state:
            return
        stage_changed = row.printed_state is None or row.printed_state[0] != row.stage
        all_done = row.total > 0 and row.done >= row.total
        due = row.printed_at is None or now - row.printed_at >= self._interval_s
        if stage_changed or all_done or row.finished or due:
            self._stream.write(self.line(row) + "\n")
            self._stream.flush()
            row.printed_at, row.printed_state = now, state

    def _redraw(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F")  # to the start of the first line
        for row in self._rows.values():
            self._stream.write("\x1b[2K" + self.line(row) + "\n")
        self._drawn = len(self._rows)
        self._stream.flush()
