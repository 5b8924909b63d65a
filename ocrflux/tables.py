"""HTML tables: the model's matrix format to ordinary HTML, and the helpers merge needs.

OCRFlux-3B writes every table as a full grid in which covered cells hold a marker
(`<l>` left, `<t>` above, `<lt>` interior of a 2-D span). `matrix_to_html` rewrites the source
in place (anchor cells gain `rowspan`/`colspan`, marker cells are removed), so cell contents,
attributes, row groups and whitespace are kept verbatim. Parsing is a small tag scanner over the
text: no dependencies, and no evaluation of model output.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# The HTML specification caps colspan at 1000; the same cap on rowspan keeps a hostile
# `rowspan="99999999"` from allocating a huge grid.
MAX_SPAN = 1000
# Laying out a grid costs one step per covered position; past this, a table is treated as
# unparseable rather than let a hostile answer hold the CPU (a real table is far smaller).
MAX_GRID_CELLS = 250_000

_TAG = re.compile(
    r"<!--.*?-->"
    r"|<(?P<close>/?)(?P<name>[A-Za-z][A-Za-z0-9]*)(?P<attrs>(?:[^>\"']|\"[^\"]*\"|'[^']*')*)>",
    re.DOTALL,
)
_MARKER = re.compile(r"\s*<(lt|l|t)\s*/?>\s*(?:</\1\s*>)?\s*", re.IGNORECASE)
_MARKER_CELL = re.compile(
    r"<(t[dh])\b[^>]*>\s*<(lt|l|t)\s*/?>\s*(?:</\2\s*>)?\s*</\1\s*>", re.IGNORECASE
)
_SPAN_ATTR = re.compile(r"\s+(rowspan|colspan)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", re.IGNORECASE)
_ROW_GROUPS = frozenset({"thead", "tbody", "tfoot"})
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class _Cell:
    tag: str  # as written, e.g. "td" or "TH"
    attrs: str  # everything between the tag name and ">"
    start: int
    open_end: int
    content_end: int
    end: int

    def content(self, source: str) -> str:
        return source[self.open_end : self.content_end]

    def span(self, name: str) -> int:
        for match in _SPAN_ATTR.finditer(self.attrs):
            if match.group(1).lower() == name:
                value = match.group(2).strip("\"'").strip()
                if not (value.isascii() and value.isdigit()):
                    return 1
                # Long digit strings would trip int()'s length limit; they are over the cap anyway.
                return max(1, min(int(value) if len(value) <= 9 else MAX_SPAN, MAX_SPAN))
        return 1


@dataclass(slots=True)
class _Row:
    start: int
    end: int = -1
    closed: bool = False
    cells: list[_Cell] = field(default_factory=list)


@dataclass(slots=True)
class _Open:
    """A cell whose end has not been seen yet."""

    tag: str
    attrs: str
    start: int
    open_end: int


def _parse(table: str) -> list[_Row] | None:
    """The rows and cells of the first table; None for no table, nested tables or stray cells."""
    rows: list[_Row] = []
    row: _Row | None = None
    cell: _Open | None = None
    depth = 0
    seen_table = False

    def close_cell(content_end: int, end: int) -> None:
        nonlocal cell
        if cell is not None and row is not None:
            row.cells.append(
                _Cell(cell.tag, cell.attrs, cell.start, cell.open_end, content_end, end)
            )
        cell = None

    def close_row(at: int, end: int, closed: bool) -> None:
        nonlocal row
        close_cell(at, at)
        if row is not None:
            row.end, row.closed = end, closed
            rows.append(row)
        row = None

    for match in _TAG.finditer(table):
        name = (match.group("name") or "").lower()
        closing = match.group("close") == "/"
        if name == "table":
            if not closing:
                if depth:
                    return None  # nested tables are beyond the matrix format
                depth, seen_table = 1, True
            elif depth:
                close_row(match.start(), match.start(), False)
                return rows
        elif not depth or not name:
            continue
        elif name == "tr":
            close_row(match.start(), match.end() if closing else match.start(), closing)
            if not closing:
                row = _Row(match.start())
        elif name in ("td", "th"):
            if closing:
                close_cell(match.start(), match.end())
            else:
                close_cell(match.start(), match.start())
                if row is None:
                    return None
                cell = _Open(match.group("name"), match.group("attrs"), match.start(), match.end())
        elif name in _ROW_GROUPS:
            close_row(match.start(), match.start(), False)
    if not seen_table:
        return None
    close_row(len(table), len(table), False)  # the model stopped before `</table>`
    return rows


def _spans(kinds: list[list[str | None]]) -> dict[tuple[int, int], tuple[int, int]] | None:
    """Map each anchor to its (rowspan, colspan), or None when the markers do not tile the grid.

    `kinds[r][c]` is None for an anchor (a cell with content) or the marker name.
    """
    owner: dict[tuple[int, int], tuple[int, int]] = {}
    for r, row in enumerate(kinds):
        for c, kind in enumerate(row):
            left = kinds[r][c - 1] if c > 0 else "none"
            above = kinds[r - 1][c] if r > 0 else "none"
            if kind is None:
                owner[r, c] = (r, c)
            elif kind == "l" and left in (None, "l"):
                owner[r, c] = owner[r, c - 1]
            elif (kind == "t" and above in (None, "t")) or (
                kind == "lt"
                and above in ("l", "lt")
                and left in ("t", "lt")
                and owner[r - 1, c] == owner[r, c - 1]
            ):
                owner[r, c] = owner[r - 1, c]
            else:
                return None
    extent: dict[tuple[int, int], list[int]] = {}  # anchor -> [bottom, right, count]
    for (r, c), anchor in owner.items():
        bottom, right, count = extent.get(anchor, [r, c, 0])
        extent[anchor] = [max(bottom, r), max(right, c), count + 1]
    spans: dict[tuple[int, int], tuple[int, int]] = {}
    for (r0, c0), (bottom, right, count) in extent.items():
        height, width = bottom - r0 + 1, right - c0 + 1
        if height * width != count:
            return None  # the covered cells do not form a rectangle
        spans[r0, c0] = (height, width)
    return spans


def _edit(source: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply non-overlapping (start, end, replacement) edits."""
    out: list[str] = []
    position = 0
    for start, end, replacement in sorted(edits):
        out += [source[position:start], replacement]
        position = end
    out.append(source[position:])
    return "".join(out)


def is_table(element: str) -> bool:
    """Whether a page element is a table (spec: starts with `<table>`, ends with `</table>`)."""
    return element.startswith("<table>") and element.endswith("</table>")


def strip_markers(table: str) -> str:
    """Drop every marker cell (`<td><l></td>` and friends), keeping everything else."""
    return _MARKER_CELL.sub("", table)


def matrix_to_html(table: str) -> str:
    """Convert a matrix-format table to HTML with `rowspan`/`colspan` on the anchor cells.

    A table without markers comes back unchanged. When the grid is inconsistent (ragged rows,
    a marker without an anchor, a span that is not a rectangle, a cell that already has a
    span) the marker cells are dropped and the rest is kept as written.
    """
    rows = _parse(table)
    if rows is None:
        return strip_markers(table)
    kinds: list[list[str | None]] = [
        [
            m.group(1).lower() if (m := _MARKER.fullmatch(cell.content(table))) else None
            for cell in row.cells
        ]
        for row in rows
    ]
    if all(kind is None for row in kinds for kind in row):
        return table
    markers = [
        (cell.start, cell.end, "")
        for row, row_kinds in zip(rows, kinds, strict=True)
        for cell, kind in zip(row.cells, row_kinds, strict=True)
        if kind is not None
    ]
    consistent = len({len(row) for row in kinds}) == 1 and not any(
        cell.span("rowspan") > 1 or cell.span("colspan") > 1 for row in rows for cell in row.cells
    )
    spans = _spans(kinds) if consistent else None
    if spans is None:
        return _edit(table, markers)
    anchors: list[tuple[int, int, str]] = []
    for (r, c), (height, width) in spans.items():
        if (height, width) == (1, 1):
            continue
        cell = rows[r].cells[c]
        attrs = _SPAN_ATTR.sub("", cell.attrs)
        if height > 1:
            attrs += f' rowspan="{height}"'
        if width > 1:
            attrs += f' colspan="{width}"'
        anchors.append((cell.start, cell.open_end, f"<{cell.tag}{attrs}>"))
    return _edit(table, markers + anchors)


def cell_text(inner_html: str) -> str:
    """The plain text of a cell's contents: tags removed, entities decoded, spaces collapsed."""
    text = _ANY_TAG.sub("", _BR.sub(" ", inner_html))
    return _SPACES.sub(" ", html.unescape(text)).strip()


def text_grid(table_html: str) -> list[list[str]] | None:
    """The cell texts of an HTML table laid out on its grid.

    A spanning cell's text appears once, at its top-left position; the other positions it
    covers (and any holes left by ragged rows) are empty strings, so every row has the same
    length. None when the text cannot be parsed as a table or has no cells.
    """
    rows = _parse(table_html)
    if not rows or not any(row.cells for row in rows):
        return None
    grid: list[list[str | None]] = [[] for _ in rows]
    area = 0
    for r, row in enumerate(rows):
        c = 0
        for cell in row.cells:
            while c < len(grid[r]) and grid[r][c] is not None:
                c += 1
            height = min(cell.span("rowspan"), len(rows) - r)
            width = cell.span("colspan")
            area += height * width
            if area > MAX_GRID_CELLS:
                return None
            text = cell_text(cell.content(table_html))
            for dr in range(height):
                line = grid[r + dr]
                line.extend([None] * (c + width - len(line)))
                for dc in range(width):
                    if line[c + dc] is None:
                        line[c + dc] = text if dr == dc == 0 else ""
            c += width
    width = max(len(line) for line in grid)
    if width * len(grid) > MAX_GRID_CELLS:
        return None
    return [[text or "" for text in line] + [""] * (width - len(line)) for line in grid]


def column_count(table_html: str) -> int | None:
    """The number of grid columns, counting colspans (and rowspans from rows above)."""
    grid = text_grid(table_html)
    return len(grid[0]) if grid else None


def rows(table_html: str) -> list[str]:
    """The source of each `<tr>` row, each ending in `</tr>` even where the source omits it."""
    parsed = _parse(table_html) or []
    return [table_html[row.start : row.end] + ("" if row.closed else "</tr>") for row in parsed]


def header_row_count(table_html: str) -> int:
    """How many leading rows form the header: the first row plus any rows its cells span into.

    0 for a table without rows.
    """
    parsed = _parse(table_html) or []
    count = 0
    for r, row in enumerate(parsed):
        if r and r >= count:
            break
        count = max([count, r + 1, *(r + cell.span("rowspan") for cell in row.cells)])
    return min(count, len(parsed))


def row_texts(table_html: str) -> list[list[str]]:
    """The plain texts of each row's cells, in source order (no grid layout)."""
    parsed = _parse(table_html) or []
    return [[cell_text(cell.content(table_html)) for cell in row.cells] for row in parsed]


def append_rows(table_html: str, new_rows: Sequence[str]) -> str | None:
    """Insert row sources after the last row of a table (inside its row group, if any)."""
    parsed = _parse(table_html)
    if not parsed:
        return None
    end = parsed[-1].end
    closing = "" if parsed[-1].closed else "</tr>"
    return table_html[:end] + closing + "".join(new_rows) + table_html[end:]
