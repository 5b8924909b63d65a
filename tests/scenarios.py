"""Documents with known content and the answers the OCRFlux-3B test double gives for them.

A `DocumentCase` holds a generated PDF, what "the model" reads on each page, the merge pairs it
detects and the table merges it answers. `register` teaches a test double all of it; the page
images are rendered with the production renderer so the double recognises them by their pixels.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pymupdf
from PIL import Image, ImageDraw

from ocrflux.page_parse import page_elements
from ocrflux.render import open_document


@dataclass(frozen=True)
class DocumentCase:
    name: str
    data: bytes
    model_pages: Sequence[str | None]  # natural_text per page as the model answers it
    merges: Mapping[int, Sequence[tuple[int, int]]] = field(default_factory=dict)
    table_merges: Sequence[tuple[str, str, str]] = ()  # (table1, table2, merged) as HTML

    def elements(self, page: int) -> list[str]:
        return page_elements(self.model_pages[page])


def pdf_with_lines(
    pages: Sequence[Sequence[str]], *, size: tuple[float, float] = (595, 842), fontsize: float = 11
) -> bytes:
    """A born-digital PDF: each page draws its lines top-down (a text layer and unique pixels)."""
    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page(width=size[0], height=size[1])
        y = 72.0
        for line in lines:
            page.insert_text((72, y), line, fontsize=fontsize)
            y += fontsize * 1.6
    data = doc.tobytes()
    doc.close()
    return data


def page_images(data: bytes) -> list[bytes]:
    with open_document(data) as document:
        return [page.png for page in document.pages()]


def register(server: object, case: DocumentCase) -> list[str]:
    """Teach a double (a fixture handle or control client) the case; returns the page keys."""
    keys = []
    for png, text in zip(page_images(case.data), case.model_pages, strict=True):
        keys.append(server.register_page(png, text))  # type: ignore[attr-defined]
    for first, pairs in case.merges.items():
        server.register_merges(
            case.elements(first),
            case.elements(first + 1),  # type: ignore[attr-defined]
            list(pairs),
        )
    for table1, table2, merged in case.table_merges:
        server.register_table_merge(table1, table2, merged)  # type: ignore[attr-defined]
    return keys


# The model's matrix format (a <l> colspan marker) and its ordinary-HTML conversion.
T3_MATRIX = (
    "<table><tr><td>Name</td><td>Score</td><td><l></td></tr>"
    "<tr><td>A</td><td>1</td><td>2</td></tr></table>"
)
T3 = (
    '<table><tr><td>Name</td><td colspan="2">Score</td></tr>'
    "<tr><td>A</td><td>1</td><td>2</td></tr></table>"
)
T4 = "<table><tr><td>B</td><td>3</td><td>4</td></tr></table>"
T5 = "<table><tr><td>C</td><td>5</td><td>6</td></tr></table>"
T45 = (
    "<table><tr><td>B</td><td>3</td><td>4</td></tr><tr><td>C</td><td>5</td><td>6</td></tr></table>"
)
T345 = (
    '<table><tr><td>Name</td><td colspan="2">Score</td></tr>'
    "<tr><td>A</td><td>1</td><td>2</td></tr><tr><td>B</td><td>3</td><td>4</td></tr>"
    "<tr><td>C</td><td>5</td><td>6</td></tr></table>"
)

REPORT_PAGES: list[str | None] = [
    "# Annual Report\n\nThis report covers the year and its paragraph continues on the next",
    "page without a break.\n\nSecond page has its own paragraph. It ends with a hyphenated exam-",
    "ple word completing the split.\n\n<Image>(10,20),(200,300)</Image>\n\nA caption after the "
    "figure.",
    f"# Results\n\n{T3_MATRIX}",
    T4,
    f"{T5}\n\nTable notes follow.",
    "# 第二部分\n\n这是一个跨页的中文段落，它在这一页没有结束",
    "而是在下一页继续。\n\nEnglish text again.",
    None,  # a blank page
    "Page ten stands alone.",
    "Page eleven ends with a sentence.",
    "Final page.",
]

REPORT_TEXT = (
    "# Annual Report\n\n"
    "This report covers the year and its paragraph continues on the next page without a break."
    "\n\nSecond page has its own paragraph. It ends with a hyphenated exam-ple word completing "
    "the split.\n\n"
    "A caption after the figure.\n\n"
    f"# Results\n\n{T345}\n\n"
    "Table notes follow.\n\n"
    "# 第二部分\n\n"
    "这是一个跨页的中文段落，它在这一页没有结束而是在下一页继续。\n\n"
    "English text again.\n\n"
    "Page ten stands alone.\n\n"
    "Page eleven ends with a sentence.\n\n"
    "Final page."
)

REPORT_PAGE_TEXTS = {
    "0": "# Annual Report\n\nThis report covers the year and its paragraph continues on the next",
    "1": "page without a break.\n\nSecond page has its own paragraph. It ends with a hyphenated "
    "exam-",
    "2": "ple word completing the split.\n\nA caption after the figure.",
    "3": f"# Results\n\n{T3}",
    "4": T4,
    "5": f"{T5}\n\nTable notes follow.",
    "6": "# 第二部分\n\n这是一个跨页的中文段落，它在这一页没有结束",
    "7": "而是在下一页继续。\n\nEnglish text again.",
    "8": "",
    "9": "Page ten stands alone.",
    "10": "Page eleven ends with a sentence.",
    "11": "Final page.",
}

#: What each report page shows in its text layer (ASCII stand-ins where a base-14 font has no
#: glyphs); the blank page draws nothing.
REPORT_LAYER_LINES: list[list[str]] = [
    ["Annual Report", "This report covers the year"],
    ["page without a break."],
    ["ple word completing the split."],
    ["Results"],
    ["B 3 4"],
    ["C 5 6", "Table notes follow."],
    ["Part two"],
    ["English text again."],
    [],
    ["Page ten stands alone."],
    ["Page eleven ends with a sentence."],
    ["Final page."],
]


def twelve_page_report() -> DocumentCase:
    """The core's end-to-end case: a paragraph over pages 1-2, a hyphenated word over 2-3, a
    figure, a table over pages 4-6 (a chain), a CJK paragraph over 7-8 and a blank page 9
    (1-based)."""
    return DocumentCase(
        name="report.pdf",
        data=pdf_with_lines(REPORT_LAYER_LINES),
        model_pages=REPORT_PAGES,
        merges={0: [(1, 0)], 1: [(1, 0)], 3: [(1, 0)], 4: [(0, 0)], 6: [(1, 0)]},
        table_merges=[(T4, T5, T45), (T3, T45, T345)],
    )


# ---- generated corpora -------------------------------------------------------------------

_WORDS = [
    "stream",
    "page",
    "table",
    "merge",
    "model",
    "vector",
    "kafka",
    "record",
    "broker",
    "partition",
    "offset",
    "column",
    "paragraph",
    "layout",
    "figure",
    "token",
    "batch",
    "worker",
    "render",
    "image",
    "scan",
    "result",
    "document",
    "text",
    "quality",
    "latency",
    "throughput",
    "memory",
    "replica",
    "leader",
    "commit",
]


def _sentence(rng: random.Random, words: int, *, end: str = ".") -> str:
    chosen = [rng.choice(_WORDS) for _ in range(words)]
    return " ".join(chosen).capitalize() + end


def _matrix_table(rng: random.Random, columns: int, rows: int, tag: str) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{tag}{r}{c}</td>" for c in range(columns)) + "</tr>"
        for r in range(rows)
    )
    return f"<table>{body}</table>"


def _generated_pages(
    rng: random.Random, name: str, count: int
) -> tuple[list[str | None], dict[int, list[tuple[int, int]]]]:
    pages: list[list[str]] = [[] for _ in range(count)]
    merges: dict[int, list[tuple[int, int]]] = {}
    pages[0].append(f"# {name}")
    for p in range(count):
        elements = pages[p]
        for _ in range(rng.randint(1, 3)):
            elements.append(
                " ".join(_sentence(rng, rng.randint(5, 12)) for _ in range(rng.randint(1, 3)))
            )
        if rng.random() < 0.15:
            elements.append("<Image>(40,60),(300,400)</Image>")
        if rng.random() < 0.1:
            elements.append("这是一个中文段落，用于测试。")
        if p + 1 < count:
            roll = rng.random()
            if roll < 0.35:  # a paragraph that runs onto the next page
                elements.append(_sentence(rng, 8, end=""))
                pages[p + 1].insert(0, _sentence(rng, 6).lower())
                merges[p] = [(len(_kept(elements)) - 1, 0)]
            elif roll < 0.5:  # a table that runs onto the next page
                columns = rng.randint(2, 4)
                elements.append(_matrix_table(rng, columns, rng.randint(1, 3), f"{p}a"))
                pages[p + 1].insert(0, _matrix_table(rng, columns, rng.randint(1, 3), f"{p}b"))
                merges[p] = [(len(_kept(elements)) - 1, 0)]
    texts: list[str | None] = ["\n\n".join(elements) for elements in pages]
    if count > 3 and rng.random() < 0.3:
        blank = rng.randrange(1, count - 1)
        if blank not in merges and blank - 1 not in merges:
            texts[blank] = None
    return texts, merges


def _kept(elements: Sequence[str]) -> list[str]:
    return page_elements("\n\n".join(elements))


def _label_image(text: str, size: tuple[int, int] = (850, 1100)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(text.splitlines()):
        draw.text((60, 60 + 24 * n), line, fill="black")
    return image


def _image_bytes(frames: Sequence[Image.Image], fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "TIFF" and len(frames) > 1:
        frames[0].save(out, format="TIFF", save_all=True, append_images=list(frames[1:]))
    else:
        frames[0].save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def generated_cases(count: int = 20, *, seed: int = 7, max_pages: int = 40) -> list[DocumentCase]:
    """`count` documents of 1 to `max_pages` pages: PDFs, PNG, JPEG and multi-page TIFF, with
    paragraphs and tables that cross pages. Every page looks different (its pixels identify it).
    """
    rng = random.Random(seed)
    images = ["png", "jpeg", "tiff", "tiff"] if count >= 8 else []
    kinds = ["pdf"] * (count - len(images)) + images
    cases = []
    for n in range(count):
        kind = kinds[n]
        name = f"gen-{seed}-{n:02d}"
        if kind == "pdf":
            pages = 1 if n == 0 else max_pages if n == 1 else rng.randint(1, max_pages)
        elif kind == "tiff":
            pages = rng.randint(2, 5)
        else:
            pages = 1
        texts, merges = _generated_pages(rng, name, pages)
        labels = [f"{name} page {p + 1}\n" + (text or "")[:300] for p, text in enumerate(texts)]
        if kind == "pdf":
            data = pdf_with_lines([label.splitlines()[:12] for label in labels])
            filename = f"{name}.pdf"
        else:
            frames = [_label_image(label) for label in labels]
            fmt = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}[kind]
            data = _image_bytes(frames, fmt)
            filename = f"{name}.{kind}"
        cases.append(DocumentCase(name=filename, data=data, model_pages=texts, merges=merges))
    return cases


# ---- a document with a drawn figure ------------------------------------------------------

#: Where page 2 of `figure_document` draws its figure, in PDF points on a 595 x 842 page: a red
#: rectangle with a blue square in its top-left corner and a green one in its bottom-right.
FIGURE_RECT = (100.0, 300.0, 300.0, 450.0)
_FIGURE_CORNER = 20.0
#: The model's page image of an A4 page: 723 x 1024 px.
_MODEL_SIZE = (723, 1024)
FIGURE_BOX = tuple(
    round(value * _MODEL_SIZE[axis % 2] / (595.0, 842.0)[axis % 2])
    for axis, value in enumerate(FIGURE_RECT)
)
FIGURE_PAGES: list[str | None] = [
    "# Figures\n\nA paragraph that runs onto",
    "the next page.\n\n<Image>({}, {}),({}, {})</Image>\n\nFigure caption text.".format(
        *FIGURE_BOX
    ),
    "Closing words.",
]
FIGURE_NAME = "figure-001-page-2.png"
FIGURE_TEXT = (
    "# Figures\n\nA paragraph that runs onto the next page.\n\n"
    "![Figure 1, page 2](<{link}>)\n\nFigure caption text.\n\nClosing words."
)
FIGURE_TEXT_WITHOUT = (
    "# Figures\n\nA paragraph that runs onto the next page.\n\nFigure caption text.\n\n"
    "Closing words."
)


def figure_document() -> DocumentCase:
    """Three pages: a paragraph over pages 1-2, then on page 2 a drawn figure (`FIGURE_RECT`)
    that the model marks with `FIGURE_BOX`, and a caption. `FIGURE_TEXT.format(link=...)` is
    the Markdown with `figures=crop`, `FIGURE_TEXT_WITHOUT` without."""
    doc = pymupdf.open()
    lines = [["Figures", "A paragraph that runs onto"], ["the next page.", "Figure caption"], []]
    for number, page_lines in enumerate(lines):
        page = doc.new_page(width=595, height=842)
        for n, line in enumerate(page_lines):
            page.insert_text((72, 72 + 18 * n), line, fontsize=11)
        if number == 2:
            page.insert_text((72, 72), "Closing words.", fontsize=11)
        if number == 1:
            left, top, right, bottom = FIGURE_RECT
            corner = _FIGURE_CORNER
            page.draw_rect(pymupdf.Rect(FIGURE_RECT), color=None, fill=(1, 0, 0))
            page.draw_rect(
                pymupdf.Rect(left, top, left + corner, top + corner), color=None, fill=(0, 0, 1)
            )
            page.draw_rect(
                pymupdf.Rect(right - corner, bottom - corner, right, bottom),
                color=None,
                fill=(0, 1, 0),
            )
    data = doc.tobytes()
    doc.close()
    return DocumentCase(
        name="figures.pdf", data=data, model_pages=FIGURE_PAGES, merges={0: [(1, 0)]}
    )


def assert_is_the_drawn_figure(png: bytes, scale: float = 2.0) -> None:
    """`png` is `FIGURE_RECT` cut from page 2 rendered `scale` times the model's size: its size
    (to a pixel or two of rounding) and its corners and middle in the drawn colours."""
    left, top, right, bottom = FIGURE_RECT
    expected = (
        (right - left) * _MODEL_SIZE[0] * scale / 595.0,
        (bottom - top) * _MODEL_SIZE[1] * scale / 842.0,
    )
    with Image.open(io.BytesIO(png)) as crop:
        assert crop.format == "PNG"
        assert abs(crop.width - expected[0]) <= 3 and abs(crop.height - expected[1]) <= 3, (
            crop.size,
            expected,
        )
        rgb = crop.convert("RGB")
        inset = round(4 * scale)
        corner = round(_FIGURE_CORNER * _MODEL_SIZE[1] * scale / 842.0)
        w, h = rgb.size
        assert rgb.getpixel((inset, inset)) == (0, 0, 255)
        assert rgb.getpixel((corner - inset, corner - inset)) == (0, 0, 255)
        assert rgb.getpixel((corner + inset, corner + inset)) == (255, 0, 0)
        assert rgb.getpixel((w // 2, h // 2)) == (255, 0, 0)
        assert rgb.getpixel((w - 1 - inset, h - 1 - inset)) == (0, 255, 0)
        assert rgb.getpixel((w - corner - inset, h - corner - inset)) == (255, 0, 0)
