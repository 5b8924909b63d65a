"""Small document generators for tests: PDFs, images and archives built in memory.

Every generator returns the file's bytes. Pages and images carry a red square in their top-left
corner (`MARKER`) so tests can check orientation by looking at a corner's colour.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

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
