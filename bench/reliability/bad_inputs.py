"""The bad-input catalogue: files people send by mistake or on purpose, each with the outcome the
design promises (ocrflux/errors.py, ocrflux/render.py, ocrflux/sniff.py), the same for every
driver: a `failed` result with an error code, or a `completed`/`partial` one (with a warning
where the file was damaged and repaired).

Limits are lowered for the run so that the "too big" kinds stay small: `MAX_PAGES=50` and
`MAX_FILE_BYTES=20 MiB` (`LIMITS_ENV`), set alike on `ocrflux convert`, the API and the worker.
"""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Callable
from dataclasses import dataclass

import pymupdf
from PIL import Image

from tests.ocrflux.docgen import (
    make_empty_pdf,
    make_image,
    make_pdf,
    make_raw_pdf,
    make_tiff,
    make_zip,
)
from tests.ocrflux.test_render import png_claiming

MAX_PAGES = 50
MAX_FILE_BYTES = 20 * 1024 * 1024
LIMITS_ENV = {"MAX_PAGES": str(MAX_PAGES), "MAX_FILE_BYTES": str(MAX_FILE_BYTES)}


@dataclass(frozen=True)
class Outcome:
    """What a driver's answer amounts to: the result's status, its error code (a `partial`
    result names why its first fallback page is one), and a warning."""

    status: str  # completed | partial | failed
    code: str | None = None
    warning: str | None = None

    def __str__(self) -> str:
        text = self.status + (f" {self.code}" if self.code else "")
        return text + (f" + warning {self.warning}" if self.warning else "")


OK = Outcome("completed")


def failed(code: str) -> tuple[Outcome, ...]:
    return (Outcome("failed", code),)


@dataclass(frozen=True)
class BadInput:
    kind: str
    filename: bytes  # as on disk (any bytes a file system allows)
    make: Callable[[], bytes]
    expected: tuple[Outcome, ...]  # any of these
    api_filename: str | None = None  # the multipart file name, when not `filename` decoded
    api_only: bool = False

    @property
    def expected_text(self) -> str:
        return " or ".join(str(outcome) for outcome in self.expected)


# --- builders ------------------------------------------------------------------------------


def _text_pdf(pages: int = 2, label: str = "bad input") -> bytes:
    return make_pdf([f"{label}: page {n + 1}" for n in range(pages)])


def _truncated_before_xref() -> bytes:
    data = _text_pdf(3, "truncated")
    return data[: data.rindex(b"xref")]


def _cut_inside_an_object() -> bytes:
    data = make_pdf([f"Chapter {n}" for n in range(6)])
    return data[: len(data) // 2]


def _javascript_pdf() -> bytes:
    script = b"app.alert('hello from a PDF'); this.submitForm('http://127.0.0.1:9/steal');"
    return make_raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
            b"/Resources << /Font << /F1 6 0 R >> >> >>",
            _stream(b"BT /F1 12 Tf 72 700 Td (A page with JavaScript) Tj ET"),
            b"<< /S /JavaScript /JS (" + script + b") >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _pdf_20() -> bytes:
    return b"%PDF-2.0" + _text_pdf(1, "PDF 2.0")[8:]


def _huge_mediabox() -> bytes:
    return make_pdf(["a page of 200 x 200 inches"], size=(14400, 14400))


def _junk_before_header() -> bytes:
    return b"X-Mailer: something\r\n" * 20 + _text_pdf(1, "junk first")


def _sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (300, 200))
    image.putdata([n % 65536 for n in range(300 * 200)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def _tiff_with_a_bad_frame() -> bytes:
    data = make_tiff([((40, 40), "white"), ((40, 40), "blue"), ((50, 50), "green")])
    with Image.open(io.BytesIO(data)) as probe:
        probe.seek(2)
        last_frame = int(probe.tile[0].offset)
    return data[: last_frame + 100]


def _random_bytes() -> bytes:
    return random.Random(12).randbytes(4096)


def _many_pages() -> bytes:
    return make_pdf([f"page {n + 1}" for n in range(MAX_PAGES + 1)])


def _over_max_bytes() -> bytes:
    """A valid one-page PDF padded (after %%EOF, which readers ignore) past MAX_FILE_BYTES."""
    data = _text_pdf(1, "too large")
    return data + b"\n" * (MAX_FILE_BYTES + 1024 - len(data))


def _rotated() -> bytes:
    doc = pymupdf.open(stream=_text_pdf(3, "rotated"), filetype="pdf")
    for number in range(doc.page_count):
        doc[number].set_rotation((90, 180, 270)[number])
    data = doc.tobytes()
    doc.close()
    return bytes(data)


def _heic() -> bytes:
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)


CATALOGUE: tuple[BadInput, ...] = (
    BadInput("empty file", b"empty.pdf", lambda: b"", failed("empty")),
    BadInput("random bytes", b"random.pdf", _random_bytes, failed("unsupported_type")),
    BadInput(
        "text named .pdf",
        b"notes.pdf",
        lambda: b"Just some notes, not a PDF.\n" * 40,
        failed("unsupported_type"),
    ),
    BadInput(
        "HTML page",
        b"page.html",
        lambda: b"<!DOCTYPE html><html><body><p>hello</p></body></html>",
        failed("unsupported_type"),
    ),
    BadInput(
        "ZIP (a .docx is one)",
        b"report.docx",
        lambda: make_zip({"word/document.xml": b"<w:document/>"}, compress=True),
        failed("unsupported_type"),
    ),
    BadInput(
        "gzip of a PDF",
        b"doc.pdf.gz",
        lambda: gzip.compress(_text_pdf()),
        failed("unsupported_type"),
    ),
    BadInput("HEIC image", b"photo.heic", _heic, failed("unsupported_type")),
    BadInput(
        "truncated PDF (no xref, repaired)",
        b"truncated.pdf",
        _truncated_before_xref,
        (Outcome("completed", warning="repaired"),),
    ),
    BadInput(
        "PDF cut inside an object",
        b"cut.pdf",
        _cut_inside_an_object,
        (Outcome("partial", "damaged_page", warning="repaired"),),
    ),
    BadInput(
        "PDF header then garbage",
        b"garbage.pdf",
        lambda: b"%PDF-1.7\n" + bytes(range(256)) * 8,
        failed("corrupt"),
    ),
    BadInput(
        "encrypted PDF (user password)",
        b"secret.pdf",
        lambda: make_pdf(["secret"], user_password="user", owner_password="owner"),
        failed("encrypted"),
    ),
    BadInput(
        "PDF with an owner password only",
        b"restricted.pdf",
        lambda: make_pdf(["restricted"], owner_password="owner"),
        (OK,),
    ),
    BadInput(
        f"PDF over MAX_PAGES ({MAX_PAGES + 1} pages)",
        b"long.pdf",
        _many_pages,
        failed("too_many_pages"),
    ),
    BadInput(
        "file over MAX_FILE_BYTES (20 MiB + 1 KiB)",
        b"large.pdf",
        _over_max_bytes,
        failed("too_large"),
    ),
    BadInput("PDF with zero pages", b"nopages.pdf", make_empty_pdf, failed("corrupt")),
    BadInput("PDF with a 200-inch MediaBox", b"poster.pdf", _huge_mediabox, (OK,)),
    BadInput("rotated pages (90/180/270)", b"rotated.pdf", _rotated, (OK,)),
    BadInput("PDF 2.0", b"v20.pdf", _pdf_20, (OK,)),
    BadInput("PDF with JavaScript (OpenAction)", b"script.pdf", _javascript_pdf, (OK,)),
    BadInput("PDF with junk before its header", b"mail.pdf", _junk_before_header, (OK,)),
    BadInput(
        "PNG truncated",
        b"cut.png",
        lambda: make_image("PNG", size=(400, 300), color="navy")[:400],
        failed("corrupt"),
    ),
    BadInput(
        "JPEG truncated",
        b"cut.jpg",
        lambda: make_image("JPEG", size=(400, 300), color="navy")[:300],
        failed("corrupt"),
    ),
    BadInput(
        "decompression-bomb PNG (50000 x 50000 header)",
        b"bomb.png",
        lambda: png_claiming(50_000, 50_000),
        failed("too_large"),
    ),
    BadInput("1 x 1 image", b"dot.png", lambda: make_image("PNG", size=(1, 1)), (OK,)),
    BadInput(
        "60000 x 10 image",
        b"strip.png",
        lambda: make_image("PNG", size=(60_000, 10), marker=False),
        (OK,),
    ),
    BadInput("CMYK JPEG", b"cmyk.jpg", lambda: make_image("JPEG", mode="CMYK"), (OK,)),
    BadInput("palette PNG", b"palette.png", lambda: make_image("PNG", mode="P"), (OK,)),
    BadInput("16-bit PNG", b"deep.png", _sixteen_bit_png, (OK,)),
    BadInput("animated GIF", b"anim.gif", _animated_gif, failed("unsupported_type")),
    BadInput(
        "SVG",
        b"drawing.svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><text>hi</text></svg>',
        failed("unsupported_type"),
    ),
    BadInput(
        "multi-frame TIFF (3 frames)",
        b"frames.tiff",
        lambda: make_tiff([((200, 100), "white"), ((100, 300), "blue"), ((50, 50), "green")]),
        (OK,),
    ),
    BadInput(
        "TIFF with a bad frame (its last)",
        b"badframe.tiff",
        _tiff_with_a_bad_frame,
        (Outcome("partial", "corrupt"),),  # the good frames are kept (ocrflux/convert.py)
    ),
    BadInput("BMP", b"image.bmp", lambda: make_image("BMP"), (OK,)),
    BadInput("WEBP", b"image.webp", lambda: make_image("WEBP"), (OK,)),
    BadInput(
        "JPEG with EXIF orientation 6",
        b"exif.jpg",
        lambda: make_image("JPEG", exif_orientation=6),
        (OK,),
    ),
    BadInput(
        "non-UTF-8 file name",
        "r\u00e9sum\u00e9".encode("latin-1") + b".pdf",
        lambda: _text_pdf(1, "latin-1 name"),
        (OK,),
    ),
    BadInput(
        "path-traversal file name",
        b"..\\..\\windows\\evil.pdf",
        lambda: _text_pdf(1, "traversal"),
        (OK,),
        api_filename="../../../../etc/cron.d/evil.pdf",
    ),
    BadInput(
        "very long file name (250 bytes)",
        b"n" * 246 + b".pdf",
        lambda: _text_pdf(1, "long name"),
        (OK,),
        api_filename="n" * 1000 + ".pdf",
    ),
    BadInput(
        "wrong extension for the bytes (PNG named .pdf)",
        b"picture.pdf",
        lambda: make_image("PNG", size=(300, 200)),
        (OK,),
    ),
    BadInput(
        "two `file` fields (API only)",
        b"twice.pdf",
        lambda: _text_pdf(1, "twice"),
        (Outcome("failed", "invalid_request"),),
        api_only=True,
    ),
)
