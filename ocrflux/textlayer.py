"""A PDF page's own text layer, read in OCRFlux's element format, and whether to trust it.

`read_text_layer(page)` turns PyMuPDF's text blocks into the elements OCRFlux-3B emits:
paragraphs (one per block, lines joined with spaces, line-break hyphenation undone), headings as
`# ` H1 lines, ruled tables as HTML `<table>`, all in reading order (multi-column pages column
by column, see `ocrflux.layout`), elements separated by blank lines. `extract_text_layer` in
`ocrflux.render` stores the result on every rendered PDF page, so the `local` engine and the
`vllm` engine's fallback pages use the same reading.

Paragraphs and headings
- A block is split into paragraphs where the gap between two lines exceeds
  `PARAGRAPH_GAP` x the line height, where the font size changes by more than
  `SIZE_CHANGE`, and before a line that starts with a bullet.
- Headings: a paragraph of at most `HEADING_MAX_LINES` lines whose size is at least
  `HEADING_SIZE_RATIO` x the body size (the size carrying the most characters), or a single bold
  line at body size or larger of at most `HEADING_MAX_CHARS` characters that does not end a
  sentence.
- Hyphens (`ocrflux.layout.join_lines`): "exam-" + "ple" is read "example" when the next line
  starts with a lowercase letter, unless the hyphenated spelling also appears inside a line on
  the same page ("well-known"); before an uppercase letter or a digit the hyphen is real and
  kept ("Jean-Paul"). Mid-line hyphens are never touched.

Tables: PyMuPDF's table finder, on ruled tables (`ocrflux.ruled_tables`). It is the expensive
part (60-130 CPU-ms on a page with a large table, against 2-4 ms for the rest of the reading),
so `tables="ruled"` (the default) runs it only where the page's ruling lines could form a table
(touching rules at three or more distinct heights, one of them vertical) and only over their
area: other pages pay about 1 ms for that check. `"always"` runs it on the whole page,
`"never"` not at all (for callers that only want text on a CPU budget). Measured costs:
BENCHMARKS.md, "Local engine quality".

When is a text layer usable (`TextLayerReading.usable`)? Measured on visible characters
(render mode 3 and fully transparent text are invisible):
- it has at least one non-space character;
- at most `MAX_BAD_SHARE` (10%) of its characters are U+FFFD, control or private-use
  characters (glyphs without a Unicode mapping: fonts subset without a ToUnicode map);
- when images cover at least `SCAN_COVERAGE` (50%) of the page, it has at least
  `MIN_CHARS_PER_SQ_INCH` (2) characters per square inch of page (about 190 on A4): below that
  the text is a stamp or a running head over a scan, and the page is recognised as an image.

Invisible text: when at least `OCR_LAYER_SHARE` (50%) of the characters are invisible, the
page is a scan with an OCR layer laid over it (`origin="ocr_layer"`), not born-digital. Its
invisible text is then read like any other (the same usability checks), and the `vllm`
engine's fallback uses it; the `local` engine prefers its own OCR for such pages and keeps the
layer as a fallback (see `ocrflux.engines.local`). On a born-digital page, invisible text (a
minority) is hidden junk and is left out.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Literal

from ocrflux.layout import (
    Box,
    ends_sentence,
    heading_element,
    hyphenated_words,
    join_lines,
    reading_order,
)
from ocrflux.mupdf import pymupdf
from ocrflux.pages import TableMode
from ocrflux.ruled_tables import centre_in, find_ruled_tables

__all__ = [
    "MAX_BAD_SHARE",
    "MIN_CHARS_PER_SQ_INCH",
    "OCR_LAYER_SHARE",
    "SCAN_COVERAGE",
    "TextLayer",
    "TextLayerReading",
    "read_text_layer",
]

Origin = Literal["born_digital", "ocr_layer"]

MAX_BAD_SHARE = 0.10
SCAN_COVERAGE = 0.5
MIN_CHARS_PER_SQ_INCH = 2.0
OCR_LAYER_SHARE = 0.5

PARAGRAPH_GAP = 0.8
SIZE_CHANGE = 0.2
HEADING_SIZE_RATIO = 1.2
HEADING_MAX_LINES = 3
HEADING_MAX_CHARS = 100

_FLAGS = (pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES) | pymupdf.TEXT_MEDIABOX_CLIP
_FILLED_OR_STROKED = 16 | 32  # MuPDF char flags: the glyph is painted
_BOLD = 16  # PyMuPDF span flag
_BULLETS = frozenset("•◦▪‣∙●○■□➢➤►▸")
_SQ_INCH = 72.0 * 72.0


class TextLayer(str):
    """The structured text of a page, plus where it came from (`origin`).

    A `str`, so it can stand wherever page text is expected; serialising it as plain text
    loses `origin` (a page task that crosses Kafka must carry it as its own field).
    """

    origin: Origin

    def __new__(cls, text: str, origin: Origin = "born_digital") -> TextLayer:
        value = super().__new__(cls, text)
        value.origin = origin
        return value

    def __reduce__(self) -> tuple[type[TextLayer], tuple[str, Origin]]:
        return (TextLayer, (str(self), self.origin))

    @property
    def born_digital(self) -> bool:
        return self.origin == "born_digital"


@dataclass(slots=True)
class TextLayerReading:
    """What `read_text_layer` found, with the signals that decided `usable`."""

    elements: list[str] = field(default_factory=list)
    origin: Origin = "born_digital"
    chars: int = 0  # non-space characters read (visible ones; all of them for an OCR layer)
    invisible_share: float = 0.0
    bad_share: float = 0.0  # U+FFFD, control and private-use characters
    chars_per_sq_inch: float = 0.0
    image_coverage: float | None = None  # only measured when the density check needs it
    tables: int = 0
    usable: bool = False
    reason: str = ""

    @property
    def text(self) -> TextLayer | None:
        """The elements joined by blank lines, or None when the layer is not usable."""
        if not self.usable or not self.elements:
            return None
        return TextLayer("\n\n".join(self.elements), self.origin)


@dataclass(slots=True)
class _Line:
    text: str
    box: Box
    size: float
    bold: bool
    chars: int


@dataclass(slots=True)
class _Unit:
    """A paragraph candidate (lines) or a table (html), placed by its box."""

    box: Box
    lines: list[_Line] = field(default_factory=list)
    html: str | None = None


def read_text_layer(page: pymupdf.Page, *, tables: TableMode = "ruled") -> TextLayerReading:
    """Read `page`'s text layer (see the module docstring); never raises for odd content."""
    textpage = page.get_textpage(flags=_FLAGS)
    blocks = textpage.extractDICT()["blocks"]
    reading = TextLayerReading()
    visible, invisible, bad_visible, bad_invisible = _count(blocks)
    total = visible + invisible
    if total == 0:
        reading.reason = "no text"
        return reading
    reading.invisible_share = invisible / total
    if reading.invisible_share >= OCR_LAYER_SHARE:
        reading.origin = "ocr_layer"
    include_invisible = reading.origin == "ocr_layer"
    reading.chars = total if include_invisible else visible
    bad = bad_visible + bad_invisible if include_invisible else bad_visible
    reading.bad_share = bad / max(1, reading.chars)
    rect = page.rect
    area = max(1.0, rect.width * rect.height) / _SQ_INCH
    reading.chars_per_sq_inch = reading.chars / area
    if not _usable(page, reading):
        return reading
    lines = _lines(blocks, include_invisible)
    units = _table_units(page, textpage, tables, lines) if tables != "never" else []
    reading.tables = len(units)
    taken = {id(line) for unit in units for line in unit.lines}
    for block_lines in lines:
        units.extend(_paragraph_units([ln for ln in block_lines if id(ln) not in taken]))
    reading.elements = _elements(units, [ln for block in lines for ln in block])
    reading.usable = bool(reading.elements)
    reading.reason = "usable" if reading.usable else "no text"
    return reading


def _usable(page: pymupdf.Page, reading: TextLayerReading) -> bool:
    if reading.chars == 0:
        reading.reason = "only invisible text"
        return False
    if reading.bad_share > MAX_BAD_SHARE:
        reading.reason = f"{reading.bad_share:.0%} of the characters are unmapped glyphs"
        return False
    if reading.chars_per_sq_inch < MIN_CHARS_PER_SQ_INCH:
        reading.image_coverage = _image_coverage(page)
        if reading.image_coverage >= SCAN_COVERAGE:
            reading.reason = (
                f"{reading.chars_per_sq_inch:.1f} characters per square inch over images "
                f"covering {reading.image_coverage:.0%} of the page"
            )
            return False
    return True


def _is_bad(char: str) -> bool:
    return char == "\ufffd" or unicodedata.category(char) in ("Cc", "Co", "Cs", "Cn")


def _visible(span: dict) -> bool:
    return span.get("alpha", 255) > 0 and bool(
        span.get("char_flags", _FILLED_OR_STROKED) & _FILLED_OR_STROKED
    )


def _count(blocks: list[dict]) -> tuple[int, int, int, int]:
    """Non-space characters: visible, invisible, and the unmapped ones among each."""
    counts = [0, 0, 0, 0]
    for block in blocks:
        for line in block.get("lines", ()):
            for span in line["spans"]:
                text = span["text"]
                hidden = 0 if _visible(span) else 1
                counts[hidden] += len(text) - text.count(" ")
                if not text.isascii() or not text.isprintable():
                    counts[2 + hidden] += sum(
                        1 for char in text if not char.isspace() and _is_bad(char)
                    )
    return counts[0], counts[1], counts[2], counts[3]


def _image_coverage(page: pymupdf.Page) -> float:
    """Share of the page covered by images (overlaps counted once per row of pixels, roughly:
    the union of image boxes on a coarse grid)."""
    rect = page.rect
    boxes = [pymupdf.Rect(info["bbox"]) & rect for info in page.get_image_info()]
    boxes = [box for box in boxes if not box.is_empty]
    if not boxes:
        return 0.0
    grid = 32
    cells = 0
    for gy in range(grid):
        y = rect.y0 + (gy + 0.5) * rect.height / grid
        for gx in range(grid):
            x = rect.x0 + (gx + 0.5) * rect.width / grid
            if any(box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1 for box in boxes):
                cells += 1
    return cells / (grid * grid)


def _lines(blocks: list[dict], include_invisible: bool) -> list[list[_Line]]:
    """The text lines of each text block, with their dominant size and boldness."""
    out = []
    for block in blocks:
        if block.get("type") != 0:
            continue
        block_lines = []
        for line in block["lines"]:
            spans = [s for s in line["spans"] if include_invisible or _visible(s)]
            text = "".join(s["text"] for s in spans)
            if not text.strip():
                continue
            weights: Counter[float] = Counter()
            bold = True
            for span in spans:
                n = len(span["text"].strip())
                if n:
                    weights[round(span["size"], 1)] += n
                    bold = bold and bool(span["flags"] & _BOLD)
            x0 = min(s["bbox"][0] for s in spans)
            y0 = min(s["bbox"][1] for s in spans)
            x1 = max(s["bbox"][2] for s in spans)
            y1 = max(s["bbox"][3] for s in spans)
            block_lines.append(
                _Line(
                    " ".join(text.split()),
                    (x0, y0, x1, y1),
                    weights.most_common(1)[0][0],
                    bold,
                    sum(weights.values()),
                )
            )
        if block_lines:
            out.append(block_lines)
    return out


def _paragraph_units(lines: Sequence[_Line]) -> list[_Unit]:
    units: list[_Unit] = []
    for line in lines:
        if units:
            previous = units[-1].lines[-1]
            height = max(1.0, previous.box[3] - previous.box[1])
            gap = line.box[1] - previous.box[3]
            same = (
                gap <= PARAGRAPH_GAP * height
                and abs(line.size - previous.size) <= SIZE_CHANGE * previous.size
                and line.text[0] not in _BULLETS
            )
            if same:
                unit = units[-1]
                unit.lines.append(line)
                unit.box = _union(unit.box, line.box)
                continue
        units.append(_Unit(line.box, [line]))
    return units


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _body_size(lines: Sequence[_Line]) -> float:
    weights: Counter[float] = Counter()
    for line in lines:
        weights[line.size] += line.chars
    return weights.most_common(1)[0][0] if weights else 0.0


def _elements(units: list[_Unit], all_lines: Sequence[_Line]) -> list[str]:
    body = _body_size(all_lines)
    heights = [ln.box[3] - ln.box[1] for ln in all_lines]
    gap = max(4.0, median(heights)) if heights else 4.0
    order = reading_order([u.box for u in units], min_column_gap=gap)
    keep = hyphenated_words(" ".join(ln.text for ln in all_lines)).__contains__
    elements = []
    for index in order:
        unit = units[index]
        if unit.html is not None:
            elements.append(unit.html)
            continue
        text = join_lines([ln.text for ln in unit.lines], lambda w: keep(w.lower()))
        if not text:
            continue
        elements.append(heading_element(text) if _is_heading(unit, text, body) else text)
    return elements


def _is_heading(unit: _Unit, text: str, body: float) -> bool:
    size = max(ln.size for ln in unit.lines)
    if len(unit.lines) <= HEADING_MAX_LINES and body and size >= HEADING_SIZE_RATIO * body:
        return any(ch.isalpha() for ch in text)
    return (
        len(unit.lines) == 1
        and unit.lines[0].bold
        and size >= body
        and len(text) <= HEADING_MAX_CHARS
        and not ends_sentence(text)
        and any(ch.isalpha() for ch in text)
    )


def _table_units(
    page: pymupdf.Page,
    textpage: pymupdf.TextPage,
    mode: TableMode,
    lines: list[list[_Line]],
) -> list[_Unit]:
    """The page's ruled tables as units, each holding the text lines it covers."""
    found = find_ruled_tables(page, textpage.extractWORDS(), mode) if mode != "never" else []
    return [
        _Unit(box, [ln for block in lines for ln in block if centre_in(ln.box, box)], table)
        for box, table in found
    ]
