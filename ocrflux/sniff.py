"""What kind of document a byte string is, judged by its content and never by its name.

`sniff` recognises the kinds the converter accepts (PDF and the image formats of the protocol,
section 2) and names the common things people send by mistake, so that the error says "ZIP
archive" rather than just "unsupported". File names only matter to the HTTP API, which refuses
an unknown extension before reading the body (`is_accepted_filename`); the bytes decide what the
document really is.
"""

from __future__ import annotations

import posixpath
from enum import StrEnum

from ocrflux.errors import EmptyInput, UnsupportedType

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "MIME_TYPES",
    "DocumentKind",
    "extension_kind",
    "is_accepted_filename",
    "sniff",
]


class DocumentKind(StrEnum):
    PDF = "pdf"
    PNG = "png"
    JPEG = "jpeg"
    BMP = "bmp"
    TIFF = "tiff"
    WEBP = "webp"


MIME_TYPES: dict[DocumentKind, str] = {
    DocumentKind.PDF: "application/pdf",
    DocumentKind.PNG: "image/png",
    DocumentKind.JPEG: "image/jpeg",
    DocumentKind.BMP: "image/bmp",
    DocumentKind.TIFF: "image/tiff",
    DocumentKind.WEBP: "image/webp",
}

# The deployment guide's list (.pdf .png .jpg .jpeg .bmp .tiff .tif) plus .webp, which the
# protocol's image list includes. The extension only gates the upload; `sniff` has the last word.
ACCEPTED_EXTENSIONS: dict[str, DocumentKind] = {
    ".pdf": DocumentKind.PDF,
    ".png": DocumentKind.PNG,
    ".jpg": DocumentKind.JPEG,
    ".jpeg": DocumentKind.JPEG,
    ".bmp": DocumentKind.BMP,
    ".tiff": DocumentKind.TIFF,
    ".tif": DocumentKind.TIFF,
    ".webp": DocumentKind.WEBP,
}

# PDF readers accept a header preceded by junk (mail gateways and some generators add bytes);
# Acrobat looks within the first 1024 bytes, and so do we.
PDF_HEADER_WINDOW = 1024

_EXACT_SIGNATURES: tuple[tuple[bytes, DocumentKind], ...] = (
    (b"\x89PNG\r\n\x1a\n", DocumentKind.PNG),
    (b"\xff\xd8\xff", DocumentKind.JPEG),
    (b"II*\x00", DocumentKind.TIFF),
    (b"MM\x00*", DocumentKind.TIFF),
    (b"II+\x00", DocumentKind.TIFF),  # BigTIFF, which Pillow reads
    (b"MM\x00+", DocumentKind.TIFF),
)

# BITMAPINFOHEADER and its relatives: the DIB header sizes that real BMP files use. Checking it
# keeps a text file that happens to start with "BM" from being taken for an image.
_BMP_DIB_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

# Things that are not documents we convert, named so the error message helps the sender.
# GIF is deliberately absent from the accepted kinds: neither the guide nor the protocol lists it.
_KNOWN_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (Office documents such as .docx are ZIP archives)"),
    (b"PK\x05\x06", "a ZIP archive (empty)"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office document (.doc/.xls/.ppt)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"8BPS", "a Photoshop document"),
    (b"AT&TFORM", "a DjVu document"),
    (b"%!PS", "a PostScript document"),
    (b"{\\rtf", "an RTF document"),
)

_TEXT_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"<svg", "an SVG image"),
    (b"<?xml", "an XML document"),
    (b"{", "a JSON document"),
)


def sniff(data: bytes) -> DocumentKind:
    """The kind of document in `data`, from its leading bytes.

    Raises `EmptyInput` for zero bytes and `UnsupportedType` for anything else that is not one of
    the accepted kinds, naming what it looks like when that is known.
    """
    if not data:
        raise EmptyInput("the document is empty (0 bytes)")
    kind = _image_kind(data)
    if kind is not None:
        return kind
    # Formats with their own signature at offset 0 win over a "%PDF-" further in: a ZIP that
    # stores a PDF uncompressed has the PDF header within its first hundred bytes.
    what = _describe_unsupported(data)
    if what is None and b"%PDF-" in data[:PDF_HEADER_WINDOW]:
        return DocumentKind.PDF
    if what is None and _is_text(data[:PDF_HEADER_WINDOW]):
        what = "a plain text file"
    if what is None:
        raise UnsupportedType(
            "unsupported document type: not a PDF or a PNG, JPEG, BMP, TIFF or WebP image"
        )
    raise UnsupportedType(f"unsupported document type: this looks like {what}")


def is_accepted_filename(filename: str) -> bool:
    """Whether an uploaded file's name has one of the accepted extensions (case-insensitive)."""
    return extension_kind(filename) is not None


def extension_kind(filename: str) -> DocumentKind | None:
    """The kind an accepted extension announces, or None; Windows paths are handled too."""
    basename = posixpath.basename(filename.replace("\\", "/"))
    _, extension = posixpath.splitext(basename)
    return ACCEPTED_EXTENSIONS.get(extension.lower())


def _image_kind(data: bytes) -> DocumentKind | None:
    for signature, kind in _EXACT_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return DocumentKind.WEBP
    if (
        data.startswith(b"BM")
        and len(data) >= 18
        and int.from_bytes(data[14:18], "little") in _BMP_DIB_HEADER_SIZES
    ):
        return DocumentKind.BMP
    return None


def _describe_unsupported(data: bytes) -> str | None:
    for signature, what in _KNOWN_UNSUPPORTED:
        if data.startswith(signature):
            return what
    if data[4:8] == b"ftyp":
        if data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
            return "a HEIF/AVIF image"
        return "an MP4/QuickTime media file"
    lowered = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for prefix, what in _TEXT_PREFIXES:
        if lowered.startswith(prefix):
            return what
    return None


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the window's end still means text.
        return exc.reason == "unexpected end of data" and exc.start >= len(head) - 3
    return True
