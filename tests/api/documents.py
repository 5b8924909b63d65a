"""Documents the API's load and abuse tests send, written straight to disk (cheap to make).

text_pdf        a born-digital PDF of text lines, written by hand (thousands of pages in a
                moment), optionally padded with an unused stream of random bytes
padded_pdf      a one-page one of exactly `size` bytes: a large upload whose conversion is quick
slow_pdf        pages of `curves` random Bézier curves: PyMuPDF holds the GIL while it
                rasterises each one (about 2 ms a curve at 1,024 px on our CI machine)
multipart_head  the head of a multipart upload, for raw-socket tests that send bodies by hand
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import pymupdf

BOUNDARY = "ocrflux-test-boundary"


def text_pdf(path: Path, pages: Sequence[Sequence[str]], *, padding: int = 0) -> Path:
    """A born-digital PDF (Helvetica lines, a text layer), followed by an unreferenced stream of
    `padding` random bytes; written by hand, so even thousands of pages take a moment."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (4 + 2 * n) for n in range(len(pages))), len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for n, lines in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * n)
        )
        shown = b" ".join(b"(%s) Tj T*" % _escaped(line) for line in lines)
        objects.append(_stream(b"BT /F1 11 Tf 14 TL 72 770 Td %s ET" % shown))
    head, offsets = _body(b"%PDF-1.7\n", objects)
    with path.open("wb") as out:
        out.write(head)
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n<< /Length %d >>\nstream\n" % (len(offsets), padding))
        remaining = padding
        while remaining:
            block = min(remaining, 1 << 20)
            out.write(os.urandom(block))
            remaining -= block
        out.write(b"\nendstream\nendobj\n")
        out.write(_xref(offsets, out.tell()))
    return path


def padded_pdf(path: Path, size: int, label: str) -> Path:
    """A one-page PDF showing `label`, exactly `size` bytes long."""
    text_pdf(path, [[label]])
    framing = path.stat().st_size
    text_pdf(path, [[label]], padding=max(0, size - framing - 16))
    missing = size - path.stat().st_size
    if missing > 0:  # PDF readers ignore whitespace after %%EOF
        with path.open("ab") as out:
            out.write(b"\n" * missing)
    return path


def slow_pdf(pages: int, curves: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    doc = pymupdf.open()
    for _ in range(pages):
        page = doc.new_page(width=595, height=842)
        shape = page.new_shape()
        for _ in range(curves):
            points = [pymupdf.Point(rng.uniform(0, 595), rng.uniform(0, 842)) for _ in range(4)]
            shape.draw_bezier(*points)
            shape.finish(width=0.3, color=(0, 0, 0))
        shape.commit()
    data = doc.tobytes(deflate=True)
    doc.close()
    return bytes(data)


def multipart_head(filename: str, content_type: str = "application/pdf") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def multipart_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def request_head(path: str, content_length: int, host: str = "127.0.0.1") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def _escaped(text: str) -> bytes:
    return (
        text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    )


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _body(header: bytes, objects: list[bytes]) -> tuple[bytes, list[int]]:
    out = bytearray(header)
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    return bytes(out), offsets


def _xref(offsets: list[int], at: int) -> bytes:
    rows = [b"xref\n0 %d\n" % (len(offsets) + 1), b"0000000000 65535 f \n"]
    rows += [b"%010d 00000 n \n" % offset for offset in offsets]
    rows.append(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(offsets) + 1))
    rows.append(b"startxref\n%d\n%%%%EOF\n" % at)
    return b"".join(rows)
