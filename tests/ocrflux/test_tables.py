"""Matrix-format tables to HTML, and the table helpers used by merge and plain text."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocrflux.tables import (
    append_rows,
    cell_text,
    column_count,
    header_row_count,
    is_table,
    matrix_to_html,
    row_texts,
    rows,
    strip_markers,
    text_grid,
)

SPEC_MATRIX = (
    "<table><tr><td>Name</td><td>Score</td><td><l></td></tr>"
    "<tr><td>A</td><td>1</td><td>2</td></tr>"
    "<tr><td><t></td><td>3</td><td>4</td></tr></table>"
)
SPEC_HTML = (
    '<table><tr><td>Name</td><td colspan="2">Score</td></tr>'
    '<tr><td rowspan="2">A</td><td>1</td><td>2</td></tr>'
    "<tr><td>3</td><td>4</td></tr></table>"
)


def test_spec_example_converts_exactly() -> None:
    assert matrix_to_html(SPEC_MATRIX) == SPEC_HTML


def test_two_dimensional_span() -> None:
    matrix = (
        "<table><tr><td>X</td><td><l></td><td>c</td></tr>"
        "<tr><td><t></td><td><lt></td><td>d</td></tr>"
        "<tr><td>e</td><td>f</td><td>g</td></tr></table>"
    )
    assert matrix_to_html(matrix) == (
        '<table><tr><td rowspan="2" colspan="2">X</td><td>c</td></tr>'
        "<tr><td>d</td></tr><tr><td>e</td><td>f</td><td>g</td></tr></table>"
    )


def test_table_without_markers_is_unchanged() -> None:
    table = '<table>\n <tr><td class="a">x</td><td>y</td></tr>\n</table>'
    assert matrix_to_html(table) == table


def test_th_attributes_whitespace_and_inline_tags_are_kept() -> None:
    matrix = (
        '<table>\n<thead>\n  <tr>\n    <th class="h">Name</th>\n    <th> <l> </th>\n  </tr>\n'
        "</thead>\n<tbody>\n  <tr><td>a<br>b <b>bold</b></td><td style='x'>2</td></tr>\n"
        "</tbody>\n</table>"
    )
    assert matrix_to_html(matrix) == (
        '<table>\n<thead>\n  <tr>\n    <th class="h" colspan="2">Name</th>\n    \n  </tr>\n'
        "</thead>\n<tbody>\n  <tr><td>a<br>b <b>bold</b></td><td style='x'>2</td></tr>\n"
        "</tbody>\n</table>"
    )


def test_marker_variants_are_recognised() -> None:
    matrix = "<table><tr><TD>a</TD><TD><L></L></TD><td><l/></td></tr></table>"
    assert matrix_to_html(matrix) == '<table><tr><TD colspan="3">a</TD></tr></table>'


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        pytest.param(
            "<table><tr><td>a</td><td><l></td></tr><tr><td>b</td></tr></table>",
            "<table><tr><td>a</td></tr><tr><td>b</td></tr></table>",
            id="ragged-rows",
        ),
        pytest.param(
            "<table><tr><td><l></td><td>a</td></tr></table>",
            "<table><tr><td>a</td></tr></table>",
            id="colspan-marker-without-anchor",
        ),
        pytest.param(
            "<table><tr><td><t></td><td>a</td></tr></table>",
            "<table><tr><td>a</td></tr></table>",
            id="rowspan-marker-in-first-row",
        ),
        pytest.param(
            "<table><tr><td>a</td><td><l></td></tr><tr><td><t></td><td>x</td></tr></table>",
            "<table><tr><td>a</td></tr><tr><td>x</td></tr></table>",
            id="t-under-colspan-without-lt",
        ),
        pytest.param(
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td><lt></td></tr></table>",
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>",
            id="lt-without-span",
        ),
        pytest.param(
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td><l></td></tr>"
            "<tr><td><t></td><td>d</td></tr></table>",
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr><tr><td>d</td></tr></table>",
            id="t-under-colspanned-anchor-of-a-later-row",
        ),
        pytest.param(
            "<table><tr><td>a</td><td>b</td></tr><tr><td><l></td><td>c</td></tr></table>",
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>",
            id="l-in-first-column",
        ),
        pytest.param(
            '<table><tr><td colspan="2">a</td><td><l></td></tr>'
            "<tr><td>b</td><td>c</td><td>d</td></tr></table>",
            '<table><tr><td colspan="2">a</td></tr><tr><td>b</td><td>c</td><td>d</td></tr></table>',
            id="existing-span-mixed-with-markers",
        ),
    ],
)
def test_inconsistent_grid_drops_markers_and_keeps_table(matrix: str, expected: str) -> None:
    assert matrix_to_html(matrix) == expected


def test_staggered_rowspans_are_consistent() -> None:
    matrix = (
        "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td><t></td></tr>"
        "<tr><td><t></td><td>d</td></tr></table>"
    )
    assert matrix_to_html(matrix) == (
        '<table><tr><td>a</td><td rowspan="2">b</td></tr><tr><td rowspan="2">c</td></tr>'
        "<tr><td>d</td></tr></table>"
    )


def test_non_rectangular_span_is_inconsistent() -> None:
    # Anchor X covers (0,0),(0,1),(1,0),(1,1) but (2,0) continues only the left column.
    matrix = (
        "<table><tr><td>X</td><td><l></td></tr>"
        "<tr><td><t></td><td><lt></td></tr>"
        "<tr><td><t></td><td>y</td></tr></table>"
    )
    assert matrix_to_html(matrix) == (
        "<table><tr><td>X</td></tr><tr></tr><tr><td>y</td></tr></table>"
    )


def test_unparseable_table_still_loses_markers() -> None:
    nested = "<table><tr><td><table><tr><td>x</td></tr></table></td><td><l></td></tr></table>"
    assert matrix_to_html(nested) == (
        "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>"
    )
    assert strip_markers("<td>a</td><td> <lt> </td>") == "<td>a</td>"


def test_unclosed_cells_rows_and_table() -> None:
    matrix = "<table><tr><td>a<td><l><tr><td>b<td>c"
    assert matrix_to_html(matrix) == '<table><tr><td colspan="2">a<tr><td>b<td>c'


def test_is_table_follows_spec_literally() -> None:
    assert is_table("<table><tr><td>a</td></tr></table>")
    assert not is_table(" <table><tr><td>a</td></tr></table>")
    assert not is_table('<table border="1"><tr><td>a</td></tr></table>')
    assert not is_table("<table><tr><td>a</td></tr></table>\n")


def test_column_count_counts_colspans_and_rowspans() -> None:
    assert column_count(SPEC_HTML) == 3
    assert (
        column_count('<table><tr><td rowspan="2">a</td><td>b</td></tr><tr><td>c</td></tr></table>')
        == 2
    )
    assert column_count("<table></table>") is None
    assert column_count("no table here") is None


def test_text_grid_pads_spanned_positions() -> None:
    assert text_grid(SPEC_HTML) == [["Name", "Score", ""], ["A", "1", "2"], ["", "3", "4"]]


def test_text_grid_clamps_hostile_spans() -> None:
    grid = text_grid('<table><tr><td rowspan="999999" colspan="999999">a</td></tr></table>')
    assert grid is not None
    assert len(grid) == 1
    assert len(grid[0]) == 1000


@pytest.mark.parametrize("value", ['"0"', '"-2"', '"two"', '"²"', '"' + "9" * 5000 + '"', "3"])
def test_odd_span_values_do_not_crash(value: str) -> None:
    grid = text_grid(f"<table><tr><td colspan={value}>a</td><td>b</td></tr></table>")
    assert grid is not None
    assert grid[0][0] == "a"
    assert "b" in grid[0]


def test_oversized_grids_are_refused() -> None:
    cell = '<td rowspan="1000" colspan="1000">x</td>'
    table = "<table><tr>" + cell * 300 + "</tr>" + "<tr><td>y</td></tr>" * 999 + "</table>"
    assert text_grid(table) is None
    assert column_count(table) is None


def test_rows_header_and_append() -> None:
    table = "<table><tbody><tr><td>h</td></tr><tr><td>1</td></tr></tbody></table>"
    assert rows(table) == ["<tr><td>h</td></tr>", "<tr><td>1</td></tr>"]
    assert rows("<table><tr><td>a<tr><td>b</table>") == ["<tr><td>a</tr>", "<tr><td>b</tr>"]
    assert header_row_count(table) == 1
    assert (
        header_row_count(
            '<table><tr><td rowspan="2">h</td><td>x</td></tr><tr><td>y</td>'
            "</tr><tr><td>1</td><td>2</td></tr></table>"
        )
        == 2
    )
    assert header_row_count("<table></table>") == 0
    assert append_rows(table, ["<tr><td>2</td></tr>"]) == (
        "<table><tbody><tr><td>h</td></tr><tr><td>1</td></tr><tr><td>2</td></tr></tbody></table>"
    )
    assert append_rows("<table></table>", ["<tr></tr>"]) is None


def test_cell_text_normalises() -> None:
    assert cell_text("  a<br/>b&amp;c <i>d</i>\n e ") == "a b&c d e"
    assert row_texts(SPEC_HTML) == [["Name", "Score"], ["A", "1", "2"], ["3", "4"]]


# --- property: generated span grids survive the round trip ----------------------------------


@st.composite
def span_grids(draw: st.DrawFn) -> tuple[int, int, dict[tuple[int, int], tuple[int, int]]]:
    """A grid tiled by non-overlapping rectangles: anchor -> (rowspan, colspan)."""
    n_rows = draw(st.integers(1, 6))
    n_cols = draw(st.integers(1, 6))
    taken = [[False] * n_cols for _ in range(n_rows)]
    spans: dict[tuple[int, int], tuple[int, int]] = {}
    for r in range(n_rows):
        for c in range(n_cols):
            if taken[r][c]:
                continue
            free_width = 0
            while c + free_width < n_cols and not taken[r][c + free_width]:
                free_width += 1
            width = draw(st.integers(1, free_width))
            height = draw(st.integers(1, n_rows - r))
            for dr in range(height):
                for dc in range(width):
                    taken[r + dr][c + dc] = True
            spans[r, c] = (height, width)
    return n_rows, n_cols, spans


def _write_matrix(n_rows: int, n_cols: int, spans: dict[tuple[int, int], tuple[int, int]]) -> str:
    kind: dict[tuple[int, int], str] = {}
    for (r, c), (height, width) in spans.items():
        for dr in range(height):
            for dc in range(width):
                kind[r + dr, c + dc] = (
                    f"cell-{r}-{c}"
                    if dr == dc == 0
                    else "<l>"
                    if dr == 0
                    else "<t>"
                    if dc == 0
                    else "<lt>"
                )
    return (
        "<table>"
        + "".join(
            "<tr>" + "".join(f"<td>{kind[r, c]}</td>" for c in range(n_cols)) + "</tr>"
            for r in range(n_rows)
        )
        + "</table>"
    )


class _CellCollector(HTMLParser):
    """An independent reading of the converted table (stdlib parser, not ours)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, int, int]]] = []
        self._cell: list[str] | None = None
        self._attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell, self._attrs = [], dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            rowspan = int(self._attrs.get("rowspan") or 1)
            colspan = int(self._attrs.get("colspan") or 1)
            self.rows[-1].append(("".join(self._cell), rowspan, colspan))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@given(span_grids())
def test_matrix_to_html_reconstructs_generated_grids(
    grid: tuple[int, int, dict[tuple[int, int], tuple[int, int]]],
) -> None:
    n_rows, n_cols, spans = grid
    html_table = matrix_to_html(_write_matrix(n_rows, n_cols, spans))
    assert "<l>" not in html_table and "<t>" not in html_table and "<lt>" not in html_table

    collector = _CellCollector()
    collector.feed(html_table)
    assert len(collector.rows) == n_rows
    texts = [text for row in collector.rows for text, _, _ in row]
    assert sorted(texts) == sorted(f"cell-{r}-{c}" for r, c in spans)  # each exactly once

    occupied = [[False] * n_cols for _ in range(n_rows)]
    for r, row in enumerate(collector.rows):
        c = 0
        for text, rowspan, colspan in row:
            while occupied[r][c]:
                c += 1
            assert text == f"cell-{r}-{c}"
            assert spans[r, c] == (rowspan, colspan)
            for dr in range(rowspan):
                for dc in range(colspan):
                    assert not occupied[r + dr][c + dc]
                    occupied[r + dr][c + dc] = True
            c += colspan
    assert all(all(line) for line in occupied)
    assert column_count(html_table) == n_cols
