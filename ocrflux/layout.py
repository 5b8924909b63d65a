"""Page geometry shared by the text-layer reader and the OCR engine: reading order and lines.

Pure functions over axis-aligned boxes `(x0, y0, x1, y1)` (y grows downwards); no PyMuPDF and
no OCR here, so both readers order and join text the same way.

Reading order is a recursive XY-cut: a region is cut at the widest empty band between its
boxes, top to bottom or left to right, and each part is ordered in turn. A left-right cut is
only a *column* cut when the boxes on both sides are wide (their median width at least
`COLUMN_MIN_WIDTH` of the region), so the narrow cells of an unruled table are read row by row
instead of column by column; a column gap also wins over a top-bottom gap of up to twice its
width, because in two-column text the line gaps of the two columns often line up. What cannot be
cut further is read in rows (boxes whose vertical centres fall inside one another), left to right.
Where columns sit under a full-width element (a title over two columns) the top-bottom cut is
made next to that element, not at the widest gap, which may lie inside one column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from statistics import median

Box = tuple[float, float, float, float]

#: Both sides of a column cut must hold boxes at least this wide (median, share of the region).
COLUMN_MIN_WIDTH = 0.25
#: A column gap is preferred over a top-bottom gap until the latter is this many times wider.
COLUMN_GAP_WEIGHT = 2.0
#: Boxes at least this wide (share of the region) are full-width elements (titles, figures).
SPANNING_WIDTH = 0.6

_TERMINAL = frozenset(".!?…:。！？；：")
_CLOSERS = "\"'”’)]}»›）】」』"
_ROMAN = r"c{0,3}(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})"
_PAGE_NUMBER = re.compile(
    r"^\W*(?:(?i:page|p\.|seite|página|pagina)\s*)?"
    rf"(?:\d{{1,5}}|(?=[ivxlc]){_ROMAN}|(?=[IVXLC]){_ROMAN.upper()})"
    r"(?:\s*(?i:of|/|de|von)\s*\d{1,5})?\W*$"
)


def reading_order(
    boxes: Sequence[Box], *, min_column_gap: float, min_row_gap: float = 0.0
) -> list[int]:
    """The indices of `boxes` in reading order (see the module docstring).

    `min_column_gap` is the narrowest empty vertical band that may separate columns (in the
    boxes' units, e.g. about one line height); `min_row_gap` the same for horizontal bands.
    """
    order: list[int] = []
    _cut(list(range(len(boxes))), boxes, min_column_gap, min_row_gap, order)
    return order


def _gaps(
    indices: list[int], boxes: Sequence[Box], lo: int, hi: int, minimum: float
) -> list[tuple[float, float, float, float]]:
    """Empty bands along one axis (lo/hi = 0/2 for x, 1/3 for y):
    (width, cut position, where the band starts, where it ends)."""
    found = []
    ordered = sorted(indices, key=lambda i: boxes[i][lo])
    reach = boxes[ordered[0]][hi]
    for i in ordered[1:]:
        start = boxes[i][lo]
        if start - reach > minimum:
            found.append((start - reach, (start + reach) / 2, reach, start))
        reach = max(reach, boxes[i][hi])
    return found


def _row_cut(
    indices: list[int],
    boxes: Sequence[Box],
    rows: list[tuple[float, float, float, float]],
    min_column_gap: float,
) -> tuple[float, float, float, float]:
    """The top-bottom cut to make: the widest gap, unless the region holds columns under a
    full-width element (a title over two columns): then the widest gap next to such an
    element, so that the columns below it are not cut across."""
    x0 = min(boxes[i][0] for i in indices)
    x1 = max(boxes[i][2] for i in indices)
    spanning = [i for i in indices if boxes[i][2] - boxes[i][0] >= SPANNING_WIDTH * (x1 - x0)]
    rest = [i for i in indices if i not in set(spanning)]
    if spanning and len(rest) > 1 and _column_cut(rest, boxes, min_column_gap) is not None:
        beside = [
            gap
            for gap in rows
            if any(
                abs(boxes[i][3] - gap[2]) < 0.5 or abs(boxes[i][1] - gap[3]) < 0.5 for i in spanning
            )
        ]
        if beside:
            return max(beside)
    return max(rows)


def _split(
    indices: list[int], boxes: Sequence[Box], lo: int, at: float
) -> tuple[list[int], list[int]]:
    before = [i for i in indices if boxes[i][lo] < at]
    return before, [i for i in indices if boxes[i][lo] >= at]


def _column_cut(
    indices: list[int], boxes: Sequence[Box], min_gap: float
) -> tuple[float, list[int], list[int]] | None:
    x0 = min(boxes[i][0] for i in indices)
    x1 = max(boxes[i][2] for i in indices)
    width = x1 - x0
    best: tuple[float, list[int], list[int]] | None = None
    for gap, at, _, _ in _gaps(indices, boxes, 0, 2, min_gap):
        if best is not None and gap <= best[0]:
            continue
        left, right = _split(indices, boxes, 0, at)
        narrowest = min(median(boxes[i][2] - boxes[i][0] for i in side) for side in (left, right))
        if narrowest >= COLUMN_MIN_WIDTH * width:
            best = (gap, left, right)
    return best


def _cut(
    indices: list[int],
    boxes: Sequence[Box],
    min_column_gap: float,
    min_row_gap: float,
    out: list[int],
) -> None:
    if len(indices) <= 1:
        out.extend(indices)
        return
    column = _column_cut(indices, boxes, min_column_gap)
    rows = _gaps(indices, boxes, 1, 3, min_row_gap)
    row = _row_cut(indices, boxes, rows, min_column_gap) if rows else None
    if column is not None and (row is None or COLUMN_GAP_WEIGHT * column[0] >= row[0]):
        parts = [column[1], column[2]]
    elif row is not None:
        parts = list(_split(indices, boxes, 1, row[1]))
    else:
        out.extend(i for line in rows_of(indices, boxes) for i in line)
        return
    for part in parts:
        _cut(part, boxes, min_column_gap, min_row_gap, out)


def rows_of(indices: Sequence[int], boxes: Sequence[Box]) -> list[list[int]]:
    """Group boxes into rows (a box joins a row when its vertical centre lies inside the row's
    band, or the row's centre inside the box), rows top to bottom, each row left to right."""
    rows: list[tuple[float, float, list[int]]] = []
    for i in sorted(indices, key=lambda i: (boxes[i][1] + boxes[i][3]) / 2):
        _, y0, _, y1 = boxes[i]
        centre = (y0 + y1) / 2
        if rows:
            top, bottom, members = rows[-1]
            if top <= centre <= bottom or y0 <= (top + bottom) / 2 <= y1:
                members.append(i)
                rows[-1] = (min(top, y0), max(bottom, y1), members)
                continue
        rows.append((y0, y1, [i]))
    return [sorted(members, key=lambda i: boxes[i][0]) for _, _, members in rows]


def join_lines(lines: Sequence[str], keep_hyphen: Callable[[str], bool] | None = None) -> str:
    """Join the lines of one paragraph with single spaces, undoing line-break hyphenation.

    A line ending in a letter and `-` (or a soft hyphen) followed by a line starting with a
    lowercase letter is a hyphenated word: "exam-" + "ple" -> "example", unless
    `keep_hyphen("well-known")` says the hyphenated spelling is real (e.g. it also occurs
    inside a line on the same page): then "well-known". Before an uppercase letter or a digit
    the hyphen is always real and kept without a space ("Jean-" + "Paul", "COVID-" + "19").
    A soft hyphen is always dropped; a line ending in an em or en dash is joined without a space.
    """
    text = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if not text:
            text = line
            continue
        if text.endswith("\u00ad"):
            text = text[:-1] + line
        elif text.endswith("-") and len(text) > 1 and text[-2].isalpha():
            if line[0].islower():
                word = text.rsplit(" ", 1)[-1] + line.split(" ", 1)[0]
                if keep_hyphen is not None and keep_hyphen(word.strip(_CLOSERS + ".,;:!?")):
                    text += line
                else:
                    text = text[:-1] + line
            elif line[0].isalnum():
                text += line
            else:
                text += " " + line
        elif text.endswith(("\u2014", "\u2013")):
            text += line
        else:
            text += " " + line
    return text


_MIDLINE_HYPHENATED = re.compile(r"\b[^\W\d_]+(?:-[^\W\d_]+)+\b")


def hyphenated_words(text: str) -> set[str]:
    """Hyphenated words written inside lines of `text` (lowercased), e.g. {"well-known"}."""
    return {match.group(0).lower() for match in _MIDLINE_HYPHENATED.finditer(text)}


def ends_sentence(text: str) -> bool:
    """Whether `text` ends with terminal punctuation (. ! ? … : and CJK marks), possibly
    followed by closing quotes or brackets."""
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _TERMINAL


def is_page_number(text: str) -> bool:
    """Whether an element is only a page number ("12", "- 12 -", "Page 3 of 10", "xiv")."""
    return len(text) <= 24 and _PAGE_NUMBER.match(text.strip()) is not None


def heading_element(text: str) -> str:
    """A heading in OCRFlux's element format: one H1 line."""
    return "# " + " ".join(text.split())
