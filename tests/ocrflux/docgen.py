"""Small document generators for tests: PDFs, images and archives built in memory.

Every generator returns the file's bytes. Pages and images carry a red square in their top-left
corner (`MARKER`) so tests can check orientation by looking at a corner's colour.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pymupdf
from PIL import ExifTags, Image

A4 = (595, 842)
LETTER = (612, 792)
MARKER = (255, 0, 0)
MARKER_FRACTION = 0.1  # the marker square's side, as a fraction of the shorter side

Size = tuple[float, float]


def make_pdf(
    pages: Sequence[str | None] = ("Hello",),
    *,
    size: Size | Sequence[Size] = A4,
    rotation: int = 0,
    cropbox: tuple[float, float, float, float] | None = None,
    marker: bool = False,
    user_password: str | None = None,
    owner_password: str | None = None,
) -> bytes:
    """A PDF with one page per entry of `pages` (the page's text, or None for a blank page).

    `size` is one (width, height) in points for every page, or one per page. `marker` paints a
    red square in each page's unrotated top-left corner. A password encrypts with AES-256.
    """
    sizes = _per_page_sizes(size, len(pages))
    doc = pymupdf.open()
    for text, (width, height) in zip(pages, sizes, strict=True):
        page = doc.new_page(width=width, height=height)
        if marker:
            side = min(width, height) * MARKER_FRACTION
            red = tuple(c / 255 for c in MARKER)
            page.draw_rect(pymupdf.Rect(0, 0, side, side), color=red, fill=red)
        if text:
            page.insert_text((72, 100), text, fontsize=12)
        if cropbox is not None:
            page.set_cropbox(pymupdf.Rect(*cropbox))
        if rotation:
            page.set_rotation(rotation)
    options: dict[str, object] = {}
    if user_password is not None or owner_password is not None:
        options = {
            "encryption": pymupdf.PDF_ENCRYPT_AES_256,
            "user_pw": user_password or "",
            "owner_pw": owner_password or "",
            "permissions": pymupdf.PDF_PERM_PRINT,
        }
    data = doc.tobytes(**options)
    doc.close()
    return data


def make_raw_pdf(objects: Sequence[bytes], *, root: int = 1) -> bytes:
    """A PDF written by hand from object bodies (numbered from 1), with a correct xref table.

    For structures PyMuPDF refuses to save, such as a document with no pages.
    """
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        xref,
    )
    return bytes(out)


def make_empty_pdf() -> bytes:
    """A well-formed PDF whose page tree has no pages."""
    return make_raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [] /Count 0 >>",
        ]
    )


def make_image(
    fmt: str = "PNG",
    *,
    size: tuple[int, int] = (200, 100),
    mode: str = "RGB",
    color: object = "white",
    marker: bool = True,
    exif_orientation: int | None = None,
    **save_options: object,
) -> bytes:
    """One image in Pillow format `fmt` (PNG, JPEG, BMP, TIFF, WEBP, GIF, ...).

    The image is drawn in RGB with a red top-left square (when `marker`), then converted to
    `mode` (e.g. CMYK, P, LA, RGBA). `exif_orientation` stores an EXIF Orientation tag.
    """
    image = _marked(size, color, marker)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)  # exact colours, no dither
    elif mode != "RGB":
        image = image.convert(mode)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = exif_orientation
        save_options["exif"] = exif.tobytes()
    return _save(image, fmt, **save_options)


def make_tiff(frames: Sequence[tuple[tuple[int, int], object]], **save_options: object) -> bytes:
    """A multi-page TIFF, one frame per (size, colour), each with the red marker."""
    images = [_marked(size, color, True) for size, color in frames]
    return _save(images[0], "TIFF", save_all=True, append_images=images[1:], **save_options)


def make_zip(members: dict[str, bytes], *, compress: bool = False) -> bytes:
    """A ZIP archive; members are stored uncompressed unless `compress`."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _per_page_sizes(size: Size | Sequence[Size], count: int) -> list[Size]:
    if len(size) == 2 and all(isinstance(side, int | float) for side in size):
        return [size] * count  # type: ignore[list-item]
    return list(size)  # type: ignore[arg-type]


def _marked(size: tuple[int, int], color: object, marker: bool) -> Image.Image:
    image = Image.new("RGB", size, color)  # type: ignore[arg-type]
    if marker:
        side = max(1, int(min(size) * MARKER_FRACTION))
        image.paste(MARKER, (0, 0, side, side))
    return image


def _save(image: Image.Image, fmt: str, **save_options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_options)  # type: ignore[arg-type]
    return buffer.getvalue()


# --- laid-out text pages (text layer and OCR tests, and the local-engine benchmark) ------------

#: Base-14 fonts by PyMuPDF short name: (regular, bold).
BASE14_FONTS = {"helv": ("helv", "hebo"), "tiro": ("tiro", "tibo"), "cour": ("cour", "cobo")}
#: TrueType fonts Debian ships (fonts-dejavu-core, fonts-liberation): used when installed.
TTF_FONTS = {
    "dejavu-sans": ("dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf"),
    "dejavu-serif": ("dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf"),
    "liberation-serif": (
        "liberation/LiberationSerif-Regular.ttf",
        "liberation/LiberationSerif-Bold.ttf",
    ),
    "liberation-sans": (
        "liberation/LiberationSans-Regular.ttf",
        "liberation/LiberationSans-Bold.ttf",
    ),
}
TTF_ROOT = "/usr/share/fonts/truetype"

_VOCABULARY = (
    "the of and to in is was for that with as on by at from this which are be or an it not "
    "have has had were their there been more other will would about into than its only also "
    "data system report market quarterly revenue growth customer service network storage "
    "document analysis result method process value number table figure section chapter page "
    "model training server request response update version release support package manager "
    "install configure option default setting network address user account access control "
    "north south river valley mountain village harbour winter summer morning evening light "
    "stream paper letter printer archive library museum garden bridge station engine factory "
    "careful quickly simple complex public private national local general special important "
    "increase decrease measure compare observe describe include require provide maintain"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass
class TextPage:
    """A generated page: the PDF, the elements OCRFlux should read from it, and their text."""

    pdf: bytes
    elements: list[str]

    @property
    def truth(self) -> str:
        return "\n\n".join(self.elements)


def sentence_text(rng: random.Random, words: int) -> str:
    """A sentence of `words` words from a fixed vocabulary, with a capital, commas and a stop."""
    picked = [rng.choice(_WORDS) for _ in range(words)]
    if rng.random() < 0.3:
        picked[rng.randrange(len(picked))] = str(rng.randint(2, 9999))
    if words > 6 and rng.random() < 0.5:
        picked[rng.randrange(2, words - 2)] += ","
    picked[0] = picked[0].capitalize()
    return " ".join(picked) + rng.choice(".....?!")


def paragraph_text(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence_text(rng, rng.randint(6, 16)) for _ in range(sentences))


def _font(name: str, bold: bool) -> tuple[pymupdf.Font, str, str | None]:
    """(Font for measuring, font name for insert_text, font file or None)."""
    if name in BASE14_FONTS:
        short = BASE14_FONTS[name][bold]
        return pymupdf.Font(short), short, None
    path = f"{TTF_ROOT}/{TTF_FONTS[name][bold]}"
    return pymupdf.Font(fontfile=path), f"{name}{'-b' if bold else ''}".replace("-", "_"), path


def available_fonts() -> list[str]:
    """The base-14 fonts, plus the Debian TrueType fonts that are installed."""
    return list(BASE14_FONTS) + [
        name
        for name, files in TTF_FONTS.items()
        if all(Path(TTF_ROOT, file).is_file() for file in files)
    ]


def wrap_words(text: str, font: pymupdf.Font, size: float, width: float) -> list[str]:
    """Greedy line breaking of `text` into lines no wider than `width` points."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and font.text_length(candidate, size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


class _Writer:
    def __init__(self, page: pymupdf.Page, font: str) -> None:
        self.page = page
        self.fonts = {bold: _font(font, bold) for bold in (False, True)}
        for measure, fontname, fontfile in self.fonts.values():
            if fontfile:
                page.insert_font(fontname=fontname, fontfile=fontfile)
            del measure

    def line(self, x: float, y: float, text: str, size: float, bold: bool = False) -> None:
        _, fontname, _ = self.fonts[bold]
        self.page.insert_text((x, y), text, fontsize=size, fontname=fontname)

    def measure(self, bold: bool = False) -> pymupdf.Font:
        return self.fonts[bold][0]


def make_text_page(
    paragraphs: Sequence[str],
    *,
    heading: str | None = None,
    table: Sequence[Sequence[str]] | None = None,
    columns: int = 1,
    font: str = "helv",
    size: float = 11,
    page_size: Size = A4,
    margin: float = 60,
    gutter: float = 28,
    force_breaks: dict[int, list[str]] | None = None,
    right_column_first: bool = False,
    table_borders: bool = True,
) -> TextPage:
    """One page laid out line by line: an optional heading (1.6 x size, bold), the paragraphs
    in `columns` columns (filled left to right), then an optional ruled table over the full
    width. `force_breaks[i]` gives paragraph i's lines verbatim (e.g. to end one in "exam-").
    `right_column_first` writes the columns into the content stream from right to left, so
    that a reader that keeps the stream's order reads them wrongly. `table_borders=False`
    leaves out the table's outer vertical rules (ruled only between columns, a LaTeX habit).

    The elements are what a reader should produce: `# heading`, one element per paragraph (a
    paragraph that crosses into the next column becomes two), the table as HTML.
    """
    doc = pymupdf.open()
    width, height = page_size
    page = doc.new_page(width=width, height=height)
    writer = _Writer(page, font)
    elements: list[str] = []
    y = margin
    if heading:
        heading_size = size * 1.6
        y += heading_size
        writer.line(margin, y, heading, heading_size, bold=True)
        y += heading_size * 0.9
        elements.append(f"# {heading}")
    leading = size * 1.3
    column_width = (width - 2 * margin - (columns - 1) * gutter) / columns
    table_height = (len(table) * (size * 1.9) + size) if table else 0
    bottom = height - margin - table_height
    column, top = 0, y
    y = top + size
    placed: list[tuple[int, float, float, str]] = []
    for index, text in enumerate(paragraphs):
        lines = (force_breaks or {}).get(index) or wrap_words(
            text, writer.measure(), size, column_width
        )
        written: list[str] = []
        for line in lines:
            if y > bottom:
                if written:
                    elements.append(" ".join(written))
                    written = []
                column += 1
                if column >= columns:
                    raise ValueError("the paragraphs do not fit on the page")
                y = top + size
            x = margin + column * (column_width + gutter)
            placed.append((column, x, y, line))
            written.append(line)
            y += leading
        elements.append(_joined(written))
        y += size * 0.8
    if right_column_first:
        placed.sort(key=lambda item: -item[0])
    for _, x, line_y, line in placed:
        writer.line(x, line_y, line, size)
    if table:
        y = max(y, bottom) + size * 0.5
        elements.append(
            _draw_table(page, writer, table, margin, y, width - 2 * margin, size, table_borders)
        )
    data = doc.tobytes()
    doc.close()
    return TextPage(data, elements)


def _joined(lines: Sequence[str]) -> str:
    text = ""
    for line in lines:
        if text.endswith("-") and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text


def _draw_table(
    page: pymupdf.Page,
    writer: _Writer,
    table: Sequence[Sequence[str]],
    x0: float,
    y0: float,
    width: float,
    size: float,
    borders: bool = True,
) -> str:
    ncols = max(len(row) for row in table)
    cell_w, cell_h = width / ncols, size * 1.9
    for r in range(len(table) + 1):
        page.draw_line((x0, y0 + r * cell_h), (x0 + width, y0 + r * cell_h), width=0.6)
    for c in range(0 if borders else 1, ncols + 1 if borders else ncols):
        x = x0 + c * cell_w
        page.draw_line((x, y0), (x, y0 + len(table) * cell_h), width=0.6)
    for r, row in enumerate(table):
        for c, cell in enumerate(row):
            writer.line(x0 + c * cell_w + 4, y0 + r * cell_h + size * 1.3, cell, size, r == 0)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in table)
    return f"<table>{body}</table>"


def table_rows(rng: random.Random, rows: int, cols: int) -> list[list[str]]:
    """A header row of words, then rows of a word and numbers."""
    header = [rng.choice(_WORDS).capitalize() for _ in range(cols)]
    body = [
        [rng.choice(_WORDS)] + [f"{rng.randint(1, 9999):,}" for _ in range(cols - 1)]
        for _ in range(rows - 1)
    ]
    return [header, *body]


def make_scan(
    pdf: bytes,
    *,
    dpi: int = 150,
    angle: float = 0.0,
    noise: float = 0.0,
    seed: int = 0,
    fmt: str = "PNG",
) -> bytes:
    """The first page of `pdf` as a scanned image: rendered at `dpi`, rotated by `angle`
    degrees (white fill), with Gaussian grey noise of standard deviation `noise` (0-255)."""
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    pixmap = doc[0].get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    image = Image.frombytes("L", (pixmap.width, pixmap.height), pixmap.samples)
    doc.close()
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    if noise:
        rng = np.random.default_rng(seed)
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(
            0, noise, (image.height, image.width)
        )
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return _save(image, fmt)


def images_pdf(images: Sequence[bytes]) -> bytes:
    """A PDF whose pages are the given images (a scanned document, no text layer)."""
    doc = pymupdf.open()
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        page = doc.new_page(width=width * 72 / 150, height=height * 72 / 150)
        page.insert_image(page.rect, stream=data)
    out = doc.tobytes()
    doc.close()
    return out


def make_unmapped_pdf(mapped: str, unmapped: int) -> bytes:
    """A one-page PDF with `mapped` in plain Helvetica and `unmapped` glyphs (at most 26) of a
    font whose ToUnicode map sends them to private-use code points, as broken subset fonts do."""
    codes = bytes(range(0x41, 0x41 + unmapped))
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /X def "
        b"1 begincodespacerange <00> <FF> endcodespacerange "
        b"1 beginbfrange <41> <5A> <E000> endbfrange "
        b"endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    content = b"BT /F1 12 Tf 72 700 Td (%s) Tj ET BT /F2 12 Tf 72 680 Td (%s) Tj ET" % (
        codes,
        mapped.encode("latin-1"),
    )
    return make_raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 7 0 R >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(cmap), cmap),
        ]
    )


def make_scanned_pdf(
    image: bytes,
    *,
    invisible_text: str | None = None,
    visible_text: str | None = None,
    size: Size = A4,
) -> bytes:
    """A PDF page covered by `image`, optionally with an invisible OCR layer (render mode 3)
    and/or a small visible stamp in the top margin."""
    doc = pymupdf.open()
    page = doc.new_page(width=size[0], height=size[1])
    page.insert_image(page.rect, stream=image)
    if invisible_text:
        page.insert_textbox(
            pymupdf.Rect(60, 60, size[0] - 60, size[1] - 60),
            invisible_text,
            fontsize=11,
            render_mode=3,
        )
    if visible_text:
        page.insert_text((60, 30), visible_text, fontsize=9)
    data = doc.tobytes()
    doc.close()
    return data
