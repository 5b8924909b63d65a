"""Write the sample documents that `make run` converts: two born-digital PDFs and one scan.

    python -m examples.make_examples [--force]

Generated, not committed (see .gitignore); rerunning keeps existing files unless --force.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import pymupdf
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
A4 = pymupdf.paper_rect("a4")
MARGIN = 64

INTRO = (
    "Our platform teams fed 48,000 documents into the pipeline this quarter. Each document is "
    "split into pages, every page is recognized on its own, and the pages are put back together "
    "in order, so that a paragraph or a table that runs over a page break comes out whole. This "
    "paragraph is long on purpose: it starts on the first page and finishes on the second one, "
    "which is exactly the case the cross-page merge exists for, because a reader expects one "
)
CONTINUED = "paragraph rather than two broken halves with a page number stuck between them."
TABLE = [
    ["Region", "Documents", "Pages", "Median latency"],
    ["North", "18,200", "240,100", "1.8 s"],
    ["South", "12,900", "151,700", "1.6 s"],
    ["East", "9,400", "120,300", "2.1 s"],
    ["West", "7,500", "88,000", "1.7 s"],
]
CLOSING = (
    "Throughput stayed within the plan for the whole quarter. The next quarter adds two GPU "
    "servers, which the stream processor uses without any change to producers or consumers."
)
BACKGROUND = [
    "The pipeline reads documents from three sources: the client library, the HTTP API and the "
    "object-storage connector that watches the shared buckets.",
    "Every source writes the same document request to the same topic, so the workers never "
    "need to know where a document came from.",
    "Most documents are born-digital reports and contracts; about one in five is a scan from "
    "the mail room, and those go through optical character recognition.",
    "Each page is rendered once, at the resolution the model was trained for, and travels as "
    "one record; results are written back as Markdown with tables in HTML.",
    "During the quarter no document was lost, including during two planned broker upgrades and "
    "one unplanned restart of a recognition worker.",
    "Pages that the model could not read after every retry were filled from the PDF's own text "
    "layer and flagged, so that a reviewer can find them quickly.",
]
COLUMNS = [
    "Streaming recognition changes how document work is scheduled. Instead of one script that "
    "walks a folder, every page becomes a record, and any number of workers can take records "
    "from the same topic. A slow page no longer holds up the pages behind it.",
    "Because the pages of one document are spread over partitions, a long document is shared "
    "by every worker in the group. The assembler collects the results in a table that is "
    "backed by a changelog, so a worker that restarts picks up where the last one stopped.",
    "Errors are answers too. A corrupt file, an encrypted one, or one with too many pages gets "
    "a failed result with a clear error code, and the next document goes on as usual.",
    "The same core also runs in a single process for small jobs: the command line converts one "
    "file, and the HTTP API answers the requests that existing scripts already send.",
]
LETTER = [
    [
        "Dear Ms. Lindqvist,",
        "Thank you for the scanned invoices you sent on the fourth of March.",
        "We have checked every page against our records and found",
        "two small differences in the delivery dates.",
        "Please find our corrections on the next page.",
    ],
    [
        "Invoice 2024-117: delivered on 12 March, not 11 March.",
        "Invoice 2024-121: delivered on 19 March, not 18 March.",
        "All amounts are correct and will be paid this month.",
        "Kind regards,",
        "Martin Okafor, Accounts",
    ],
]


def _text_page(doc: pymupdf.Document) -> tuple[pymupdf.Page, float]:
    return doc.new_page(width=A4.width, height=A4.height), float(MARGIN)


def _paragraph(
    page: pymupdf.Page,
    y: float,
    text: str,
    *,
    size: float = 11,
    font: str = "helv",
    x0: float = MARGIN,
    x1: float | None = None,
) -> float:
    x1 = x1 if x1 is not None else A4.width - MARGIN
    box = pymupdf.Rect(x0, y, x1, A4.height - MARGIN)
    left = page.insert_textbox(box, text, fontsize=size, fontname=font)
    used = box.height - left if left >= 0 else box.height
    return y + used + size


def _table(page: pymupdf.Page, y: float, rows: list[list[str]]) -> float:
    widths = [130, 110, 110, 120]
    height = 20
    x = float(MARGIN)
    for r, row in enumerate(rows):
        cx = x
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(cx, y + r * height, cx + widths[c], y + (r + 1) * height)
            page.draw_rect(rect, color=(0, 0, 0), width=0.7)
            page.insert_text(
                (rect.x0 + 5, rect.y1 - 6), cell, fontsize=10, fontname="hebo" if r == 0 else "helv"
            )
            cx += widths[c]
    return y + len(rows) * height + 16


def quarterly_report() -> bytes:
    doc = pymupdf.open()
    page, y = _text_page(doc)
    y = _paragraph(page, y, "Quarterly Operations Report", size=20, font="hebo")
    y = _paragraph(page, y, "Summary of the document pipeline, third quarter.", size=11)
    y = _paragraph(page, y, " ".join(BACKGROUND))
    _paragraph(page, A4.height - MARGIN - 110, INTRO.strip())
    page, y = _text_page(doc)
    y = _paragraph(page, y, CONTINUED)
    y = _paragraph(page, y + 10, "Documents by region", size=15, font="hebo")
    y = _table(page, y, TABLE)
    _paragraph(page, y, CLOSING)
    data = doc.tobytes(garbage=3, deflate=True)
    doc.close()
    return data


def two_column_article() -> bytes:
    doc = pymupdf.open()
    gutter = 24
    middle = A4.width / 2
    for number in range(2):
        page, y = _text_page(doc)
        if number == 0:
            y = _paragraph(page, y, "Why stream documents?", size=18, font="hebo")
        left = y
        for column, text in enumerate(COLUMNS[number * 2 : number * 2 + 2]):
            x0 = MARGIN if column == 0 else middle + gutter / 2
            x1 = middle - gutter / 2 if column == 0 else A4.width - MARGIN
            _paragraph(page, left, text, x0=x0, x1=x1)
    data = doc.tobytes(garbage=3, deflate=True)
    doc.close()
    return data


def scanned_letter(seed: int = 11) -> bytes:
    """A PDF of page *images* (no text layer), like a scanner makes: 150 DPI, a little noise
    and a slight skew."""
    rng = random.Random(seed)
    doc = pymupdf.open()
    for lines in LETTER:
        source = pymupdf.open()
        page = source.new_page(width=A4.width, height=A4.height)
        y = 120.0
        for line in lines:
            page.insert_text((90, y), line, fontsize=13, fontname="tiro")
            y += 28
        pixmap = page.get_pixmap(dpi=150)
        image = Image.open(io.BytesIO(pixmap.tobytes("png"))).convert("L")
        image = image.rotate(
            rng.uniform(-0.6, 0.6), fillcolor=255, resample=Image.Resampling.BICUBIC
        )
        noise = Image.effect_noise(image.size, 18).filter(ImageFilter.GaussianBlur(0.6))
        image = Image.blend(image, noise, 0.08)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        scan = doc.new_page(width=A4.width, height=A4.height)
        scan.insert_image(scan.rect, stream=out.getvalue())
        source.close()
    data = doc.tobytes(garbage=3, deflate=True)
    doc.close()
    return data


SAMPLES = {
    "quarterly-report.pdf": quarterly_report,
    "two-column-article.pdf": two_column_article,
    "scanned-letter.pdf": scanned_letter,
}


def write_samples(folder: Path = HERE, *, force: bool = False) -> list[Path]:
    paths = []
    for name, make in SAMPLES.items():
        path = folder / name
        if force or not path.exists():
            path.write_bytes(make())
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rewrite existing samples")
    for path in write_samples(force=parser.parse_args().force):
        print(path.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
