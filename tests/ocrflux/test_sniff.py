from __future__ import annotations

import pytest

from ocrflux.errors import EmptyInput, UnsupportedType
from ocrflux.sniff import (
    ACCEPTED_EXTENSIONS,
    MIME_TYPES,
    PDF_HEADER_WINDOW,
    DocumentKind,
    extension_kind,
    is_accepted_filename,
    sniff,
)
from tests.ocrflux.docgen import make_image, make_pdf, make_tiff, make_zip


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (make_pdf(["x"]), DocumentKind.PDF),
        (make_image("PNG"), DocumentKind.PNG),
        (make_image("JPEG"), DocumentKind.JPEG),
        (make_image("BMP"), DocumentKind.BMP),
        (make_image("TIFF"), DocumentKind.TIFF),
        (make_image("TIFF", big_tiff=True), DocumentKind.TIFF),
        (make_tiff([((10, 10), "red"), ((10, 10), "blue")]), DocumentKind.TIFF),
        (make_image("WEBP"), DocumentKind.WEBP),
    ],
    ids=["pdf", "png", "jpeg", "bmp", "tiff", "bigtiff", "multi-tiff", "webp"],
)
def test_recognises_generated_documents(data: bytes, kind: DocumentKind) -> None:
    assert sniff(data) is kind


def test_tiff_in_both_byte_orders() -> None:
    assert sniff(b"II*\x00" + bytes(20)) is DocumentKind.TIFF
    assert sniff(b"MM\x00*" + bytes(20)) is DocumentKind.TIFF


def test_pdf_header_after_leading_junk_within_window() -> None:
    junk = b"X-Mailer: something\r\n" * 10
    assert sniff(junk + make_pdf(["x"])) is DocumentKind.PDF


def test_pdf_header_beyond_the_window_is_not_a_pdf() -> None:
    data = b"\x01" * PDF_HEADER_WINDOW + make_pdf(["x"])
    with pytest.raises(UnsupportedType):
        sniff(data)


def test_empty_input() -> None:
    with pytest.raises(EmptyInput) as info:
        sniff(b"")
    assert info.value.code == "empty"


def test_zip_renamed_pdf_is_named_as_zip_even_when_it_stores_a_pdf() -> None:
    data = make_zip({"report.pdf": make_pdf(["x"])})
    assert b"%PDF-" in data[:PDF_HEADER_WINDOW]  # the trap: a stored PDF's header comes early
    with pytest.raises(UnsupportedType, match="ZIP archive") as info:
        sniff(data)
    assert info.value.code == "unsupported_type"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (make_image("GIF"), "GIF image"),
        (b"Just some notes\nabout a meeting.\n", "plain text"),
        ("Grüße aus Köln ".encode() * 100, "plain text"),
        (b"  <!DOCTYPE html><html><body>404</body></html>", "HTML page"),
        (b"<?xml version='1.0'?><root/>", "XML document"),
        (b'{"status": "error"}', "JSON document"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "gzip archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(20), "legacy Microsoft Office"),
        (b"%!PS-Adobe-3.0\n", "PostScript"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(20), "HEIF"),
    ],
    ids=["gif", "text", "utf8-text", "html", "xml", "json", "gzip", "ole2", "postscript", "heic"],
)
def test_unsupported_types_are_named(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedType, match=named):
        sniff(data)


def test_unknown_binary_gets_a_generic_message() -> None:
    with pytest.raises(UnsupportedType, match="not a PDF or a PNG, JPEG, BMP, TIFF or WebP"):
        sniff(bytes(range(256)) * 4)


def test_text_starting_with_bm_is_not_a_bmp() -> None:
    with pytest.raises(UnsupportedType, match="plain text"):
        sniff(b"BMW annual report, unfortunately as text")


def test_riff_that_is_not_webp() -> None:
    with pytest.raises(UnsupportedType):
        sniff(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(20))


def test_every_kind_has_a_mime_type() -> None:
    assert set(MIME_TYPES) == set(DocumentKind)
    assert MIME_TYPES[DocumentKind.PDF] == "application/pdf"
    assert all(mime.startswith("image/") for kind, mime in MIME_TYPES.items() if kind != "pdf")


def test_accepted_extensions_are_the_guides_plus_webp() -> None:
    guide = {".pdf", ".png", ".jpg", ".jpeg", ".bmp", ".tiff", ".tif"}
    assert set(ACCEPTED_EXTENSIONS) == guide | {".webp"}


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("scan.pdf", DocumentKind.PDF),
        ("SCAN.PDF", DocumentKind.PDF),
        ("photo.final.JPG", DocumentKind.JPEG),
        ("C:\\Users\\me\\fax.tif", DocumentKind.TIFF),
        ("dir/page.webp", DocumentKind.WEBP),
        ("animation.gif", None),
        ("report.docx", None),
        ("pdf", None),
        (".pdf", None),
        ("", None),
    ],
)
def test_extension_kind(filename: str, kind: DocumentKind | None) -> None:
    assert extension_kind(filename) == kind
    assert is_accepted_filename(filename) is (kind is not None)
