"""Plain-text progress bars, one per document: redrawn in place on a terminal, as occasional
lines otherwise (logs, CI). No dependencies beyond the standard library."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from schemas.records import ProgressEvent, ResultRecord

BAR_WIDTH = 24
#: Without a terminal, a document's line is repeated at most this often while its pages advance.
LINE_INTERVAL_S = 5.0


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
        return self.stage in ("completed", "partial", "failed")


class ProgressBoard:
    """Bars for documents keyed by `doc_id`, labelled with `labels[doc_id]`."""

    def __init__(
        self,
        labels: Mapping[str, str],
        stream: TextIO,
        *,
        tty: bool | None = None,
        interval_s: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rows = {doc_id: _Row(label) for doc_id, label in labels.items()}
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._interval_s = interval_s
        self._clock = clock
        self._drawn = 0
        self._width = max((len(label) for label in labels.values()), default=0)

    def draw(self) -> None:
        """Show every bar now (on a terminal; lines are only written as documents advance)."""
        if self._tty:
            self._redraw()

    def update(self, event: ProgressEvent) -> None:
        row = self._rows.get(event.doc_id)
        if row is None or row.finished:
            return
        row.stage = event.stage
        row.done, row.total = event.pages_done, event.pages_total
        self._show(row)

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
        """End the board: on a terminal, leave the cursor below the bars."""
        self._stream.flush()

    def line(self, row: _Row) -> str:
        if row.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * row.done // row.total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            count = f"{row.done}/{row.total}"
        else:
            bar, count = "-" * BAR_WIDTH, "?/?"
        text = f"{row.label:<{self._width}}  [{bar}] {count:>9}  {row.stage}"
        return f"{text} {row.note}".rstrip()

    def _show(self, row: _Row) -> None:
        if self._tty:
            self._redraw()
            return
        now = self._clock()
        state = (row.stage, row.done, row.total)
        if state == row.printed_state:
            return
        stage_changed = row.printed_state is None or row.printed_state[0] != row.stage
        due = row.printed_at is None or now - row.printed_at >= self._interval_s
        if stage_changed or row.finished or due:
            self._stream.write(self.line(row) + "\n")
            self._stream.flush()
            row.printed_at, row.printed_state = now, state

    def _redraw(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F")  # to the start of the first bar
        for row in self._rows.values():
            self._stream.write("\x1b[2K" + self.line(row) + "\n")
        self._drawn = len(self._rows)
        self._stream.flush()
