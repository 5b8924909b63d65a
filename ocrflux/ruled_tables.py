"""Ruled tables on a PDF page: where they could be, and PyMuPDF's table finder over them.

`find_ruled_tables(page, words, mode)` returns each table's box and its HTML. The finder
(`Page.find_tables(use_layout=False)`, lines strategy) is the expensive part of reading a text
layer (it builds a Python object per character), so with `mode="ruled"` it runs only where the
page's vector graphics could form a table (`_grids`) and only over that area. Its default
`use_layout=True` runs PyMuPDF's ONNX layout model (about 200 ms a page, and it lost the spaces
inside cells in our trials): never used here. Cell text comes from the page's words (the
finder's own cell text drops narrow spaces); merged cells become `rowspan`/`colspan`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ocrflux.layout import Box, join_lines, rows_of
from ocrflux.mupdf import pymupdf
from ocrflux.pages import TableMode
from ocrflux.tables import matrix_to_html

__all__ = ["centre_in", "find_ruled_tables"]

_RULE_THICKNESS = 2.0  # points: a filled rectangle this thin is a rule, not a box
_RULE_MIN_LENGTH = 10.0

Word = tuple[float, float, float, float, str, int, int, int]


@dataclass(slots=True)
class _Rule:
    """A horizontal (y0 == y1) or vertical (x0 == x1) rule, in points."""

    x0: float
    y0: float
    x1: float
    y1: float


def _rules(page: pymupdf.Page) -> tuple[list[_Rule], list[_Rule]]:
    """The page's horizontal and vertical rules: straight lines, thin filled rectangles, and
    the edges of larger rectangles."""
    horizontal: list[_Rule] = []
    vertical: list[_Rule] = []
    for path in page.get_cdrawings():
        for item in path["items"]:
            if item[0] == "l":
                (ax, ay), (bx, by) = item[1], item[2]
                x0, x1, y0, y1 = min(ax, bx), max(ax, bx), min(ay, by), max(ay, by)
                if y1 - y0 < 1 and x1 - x0 >= _RULE_MIN_LENGTH:
                    horizontal.append(_Rule(x0, y0, x1, y0))
                elif x1 - x0 < 1 and y1 - y0 >= _RULE_MIN_LENGTH:
                    vertical.append(_Rule(x0, y0, x0, y1))
            elif item[0] == "re":
                x0, y0, x1, y1 = tuple(pymupdf.Rect(item[1]).normalize())
                if y1 - y0 <= _RULE_THICKNESS and x1 - x0 >= _RULE_MIN_LENGTH:
                    horizontal.append(_Rule(x0, (y0 + y1) / 2, x1, (y0 + y1) / 2))
                elif x1 - x0 <= _RULE_THICKNESS and y1 - y0 >= _RULE_MIN_LENGTH:
                    vertical.append(_Rule((x0 + x1) / 2, y0, (x0 + x1) / 2, y1))
                elif x1 - x0 >= _RULE_MIN_LENGTH and y1 - y0 >= _RULE_MIN_LENGTH:
                    horizontal += [_Rule(x0, y0, x1, y0), _Rule(x0, y1, x1, y1)]
                    vertical += [_Rule(x0, y0, x0, y1), _Rule(x1, y0, x1, y1)]
    return horizontal, vertical


def _grids(
    page: pymupdf.Page,
) -> list[tuple[pymupdf.Rect, list[tuple[pymupdf.Point, pymupdf.Point]]]]:
    """Where ruled tables could be, and the lines that close their open sides.

    Rules that touch each other form a group; a group is a table candidate when its
    horizontal rules sit at three or more distinct heights and it has a vertical rule. A
    framed box (a code listing, a note) has only two heights and lines under headings have no
    vertical rule, so neither wakes the table finder. Tables ruled only between columns (no
    outer border, a common LaTeX style) get vertical lines added at the ends of their
    horizontal rules, or the finder would drop their first and last columns.
    """
    horizontal, vertical = _rules(page)
    if not vertical or len(horizontal) < 3:
        return []
    tol = 2.0
    parent = list(range(len(horizontal) + len(vertical)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, h in enumerate(horizontal):  # horizontal rules that meet end to end
        for b in range(a):
            other = horizontal[b]
            if abs(h.y0 - other.y0) <= tol and h.x0 <= other.x1 + tol and other.x0 <= h.x1 + tol:
                parent[find(a)] = find(b)
    for k, v in enumerate(vertical):
        for a, h in enumerate(horizontal):
            if h.x0 - tol <= v.x0 <= h.x1 + tol and v.y0 - tol <= h.y0 <= v.y1 + tol:
                parent[find(len(horizontal) + k)] = find(a)
    groups: dict[int, tuple[list[_Rule], list[_Rule]]] = {}
    for a, h in enumerate(horizontal):
        groups.setdefault(find(a), ([], []))[0].append(h)
    for k, v in enumerate(vertical):
        groups.setdefault(find(len(horizontal) + k), ([], []))[1].append(v)
    found = []
    for rows, columns in groups.values():
        if not columns or len({round(h.y0) for h in rows}) < 3:
            continue
        x0, x1 = min(h.x0 for h in rows), max(h.x1 for h in rows)
        y0 = min(min(h.y0 for h in rows), min(v.y0 for v in columns))
        y1 = max(max(h.y0 for h in rows), max(v.y1 for v in columns))
        closing = [
            (pymupdf.Point(x, y0), pymupdf.Point(x, y1))
            for x in (x0, x1)
            if not any(abs(v.x0 - x) <= tol for v in columns)
        ]
        found.append((pymupdf.Rect(x0 - 3, y0 - 3, x1 + 3, y1 + 3) & page.rect, closing))
    return found


def centre_in(inner: Box, outer: Box) -> bool:
    """Whether the centre of `inner` lies inside `outer`."""
    x = (inner[0] + inner[2]) / 2
    y = (inner[1] + inner[3]) / 2
    return outer[0] <= x <= outer[2] and outer[1] <= y <= outer[3]


def _table_html(table: pymupdf.table.Table, words: list[Word]) -> str | None:
    rows = [row.cells for row in table.rows]
    if not rows or not rows[0]:
        return None
    ncols = max(len(r) for r in rows)
    grid: list[list[str | None]] = [[None] * ncols for _ in rows]
    col_x = [
        min((r[c][0] for r in rows if c < len(r) and r[c] is not None), default=None)
        for c in range(ncols)
    ]
    row_y = [row.bbox[1] for row in table.rows]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            if cell is None or grid[r][c] is not None:
                continue
            grid[r][c] = html.escape(_cell_text(cell, words), quote=False)
            last_c = c
            while last_c + 1 < ncols and (x := col_x[last_c + 1]) is not None and x < cell[2] - 1:
                last_c += 1
            last_r = r
            while last_r + 1 < len(rows) and row_y[last_r + 1] < cell[3] - 1:
                last_r += 1
            for rr in range(r, last_r + 1):
                for cc in range(c, last_c + 1):
                    if (rr, cc) != (r, c) and grid[rr][cc] is None:
                        grid[rr][cc] = "<t>" if cc == c else "<l>" if rr == r else "<lt>"
    if not any(cell and not cell.startswith("<") for row in grid for cell in row):
        return None
    matrix = "<table>" + "".join(
        "<tr>" + "".join(f"<td>{cell or ''}</td>" for cell in row) + "</tr>" for row in grid
    )
    return matrix_to_html(matrix + "</table>")


def _cell_text(cell: tuple[float, float, float, float], words: list[Word]) -> str:
    inside = [w for w in words if centre_in((w[0], w[1], w[2], w[3]), cell)]
    if not inside:
        return ""
    boxes = [(w[0], w[1], w[2], w[3]) for w in inside]
    lines = [" ".join(inside[i][4] for i in row) for row in rows_of(range(len(inside)), boxes)]
    return join_lines(lines)


def find_ruled_tables(
    page: pymupdf.Page, words: list[Word], mode: TableMode = "ruled"
) -> list[tuple[Box, str]]:
    """The page's ruled tables of at least two rows and two columns: (box, HTML) each.

    `words` are the page's words (`TextPage.extractWORDS()`); `mode` is "ruled" (only where
    rules could form a table), "always" (the whole page) or "never".
    """
    if mode == "never":
        return []
    regions = _grids(page)
    if mode == "always":  # one pass over the whole page, open sides still closed
        regions = [(page.rect, [line for _, closing in regions for line in closing])]
    found: list[pymupdf.table.Table] = []
    for clip, closing in regions:
        try:
            finder = page.find_tables(
                clip=clip, use_layout=False, strategy="lines", add_lines=closing or None
            )
        except (RuntimeError, ValueError, IndexError, ZeroDivisionError):
            finder = None  # the finder's geometry code on a degenerate page: read it as text
        if finder is not None:  # it also returns None on its own errors
            found.extend(finder.tables)
    out: list[tuple[Box, str]] = []
    for table in found:
        if table.row_count < 2 or table.col_count < 2:
            continue  # a framed box, not a table
        html_table = _table_html(table, words)
        if html_table is not None:
            x0, y0, x1, y1 = table.bbox
            out.append(((x0, y0, x1, y1), html_table))
    return out
