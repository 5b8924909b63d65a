"""Input checks and page rendering: document bytes in, one 1024 px PNG per page out.

`open_document` checks everything that can be checked before any page is rendered (size, type,
corruption, encryption, page count, image pixel count) and raises the matching `InputError`.
`Document.pages` then renders lazily, one page at a time (protocol, section 2): the longest side
becomes exactly `TARGET_LONGEST_SIDE` px and the short side `int(short * 1024 / long)`, as the
reference does; PDF pages are rasterised straight at that size, images are resized with LANCZOS.

What PyMuPDF 2.0 (MuPDF 1.28) does with damaged PDFs, and how we classify it:
- it repairs what it can: a PDF cut short or with garbage after some point usually still opens
  (`Document.repaired` is then True, and `Document.warnings` says so for the result) and its
  pages load; pages whose content was lost render blank. Such a page (no text layer, one colour)
  of a repaired PDF raises `DamagedPage`, which both drivers turn into a fallback page, so the
  result is `partial` instead of silently `completed`. That check needs the page's text layer,
  so a repaired PDF takes its text layers while rendering even when they are deferred.
- when nothing can be recovered, opening raises `FileDataError` ("Failed to open stream"), or
  `page_count` raises `RuntimeError` ("Invalid number of pages"), or the document has zero pages.
  All of these, and a first page that cannot be loaded, are `CorruptInput`.
- a later page that fails to render raises `CorruptInput` naming that page.

Rendering is synchronous CPU work; callers run it in an executor. PyMuPDF does not support
being called from several threads at once, not even for different documents, so every PyMuPDF
call here holds one process-wide lock: PDF pages rasterise one at a time per process whatever
the executor, while their PNG encoding (zlib, outside the lock) overlaps the next page's
(images, decoded by Pillow, run in parallel across documents; one image's frames decode one at
a time). For parallel PDF rendering use a process pool (`ocrflux.render_pool`). `render_page`
may be called from several threads; one `pages()` iterator must not be shared between threads.

Each PDF page's text layer is taken while it renders (5-6 ms of CPU a page), unless the
document is opened with `defer_text_layer=True`: then `RenderedPage.text_layer_deferred` says
it was not taken yet, and `Document.text_layer(index)` takes it later (the `vllm` engine only
needs it for a page the model fails). Images have none, deferred or not.
"""

from __future__ import annotations

import io
import logging
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from PIL import Image, ImageOps

from ocrflux.errors import (
    CorruptInput,
    DamagedPage,
    EncryptedInput,
    InputError,
    TooLarge,
    TooManyPages,
    UnsupportedType,
)
from ocrflux.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PAGES, DEFAULT_MAX_PIXELS
from ocrflux.mupdf import pymupdf
from ocrflux.pages import RenderedPage, TableMode, page_indices
from ocrflux.png import GREY, RGB, png_file
from ocrflux.sniff import DocumentKind, sniff
from ocrflux.textlayer import TextLayer, read_text_layer
from schemas.page_ranges import PageRanges

if TYPE_CHECKING:
    from schemas.results import ErrorInfo

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PAGES",
    "DEFAULT_MAX_PIXELS",
    "REPAIRED",
    "TARGET_LONGEST_SIDE",
    "Document",
    "extract_text_layer",
    "open_document",
    "target_size",
]

logger = logging.getLogger(__name__)

# The page size OCRFlux-3B was trained on (protocol, section 2).
TARGET_LONGEST_SIDE = 1024

# What PyMuPDF raises for unreadable input: FileDataError (a RuntimeError), plain RuntimeError
# from its C helpers, ValueError, and MuPDF's own exception classes.
_PDF_ERRORS: tuple[type[Exception], ...] = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)
# What Pillow raises for damaged images: OSError (incl. UnidentifiedImageError and "image file
# is truncated"), SyntaxError from format parsers, and a few plain errors from broken headers.
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError)
# PyMuPDF shares one MuPDF context across the process and must not be entered from two threads
# at once; every call into it holds this lock, so even a multi-thread executor cannot crash it.
_PYMUPDF_LOCK = threading.RLock()
_PIL_FORMATS = {
    DocumentKind.PNG: "PNG",
    DocumentKind.JPEG: "JPEG",
    DocumentKind.BMP: "BMP",
    DocumentKind.TIFF: "TIFF",
    DocumentKind.WEBP: "WEBP",
}
_WHITE = (255, 255, 255)
_LANCZOS = Image.Resampling.LANCZOS
#: The result warning of a PDF that PyMuPDF had to repair to open (`Document.warnings`).
REPAIRED = "repaired"


def target_size(width: float, height: float) -> tuple[int, int]:
    """The reference geometry: longest side 1024, short side `int(short * 1024 / long)`."""
    if width <= 0 or height <= 0:
        raise ValueError(f"page has no area ({width} x {height})")
    if width >= height:
        return TARGET_LONGEST_SIDE, max(1, int(height * TARGET_LONGEST_SIDE / width))
    return max(1, int(width * TARGET_LONGEST_SIDE / height)), TARGET_LONGEST_SIDE


def extract_text_layer(page: pymupdf.Page, *, tables: TableMode = "ruled") -> TextLayer | None:
    """The page's own text in OCRFlux's element format (`ocrflux.textlayer`), or None when the
    page has no usable text layer. The result is a `str` whose `origin` tells a born-digital
    page from an OCR layer over a scan. `tables="ruled"` (the default) runs PyMuPDF's table
    finder only where ruling lines could form a table: a few ms on other pages, tens of ms on a
    page with a large ruled table; `"never"` skips it (see `ocrflux.textlayer`)."""
    return read_text_layer(page, tables=tables).text


class Document(ABC):
    """An opened, validated document. Close it (or use `with`) to release the parser."""

    def __init__(
        self,
        kind: DocumentKind,
        page_count: int,
        *,
        repaired: bool = False,
        tables: TableMode = "ruled",
        defer_text_layer: bool = False,
    ) -> None:
        self.kind = kind
        self.page_count = page_count
        self.repaired = repaired  # PyMuPDF had to rebuild a broken PDF to open it
        self.text_layer_tables: TableMode = tables
        # Pages render without their text layer (`RenderedPage.text_layer_deferred`); a
        # repaired PDF takes it anyway, for its damaged-page check.
        self.defer_text_layer = defer_text_layer and not repaired
        self._closed = False

    @property
    def warnings(self) -> list[ErrorInfo]:
        """What the document's result should warn about: a repaired file may have lost content."""
        if not self.repaired:
            return []
        from schemas.results import ErrorInfo  # pydantic: see `ocrflux.head_start`

        return [
            ErrorInfo(
                code=REPAIRED,
                message=f"the file was damaged and has been repaired: any of its "
                f"{self.page_count} pages may be missing content (pages that came out blank "
                f"are fallback pages with error code {DamagedPage.code!r})",
            )
        ]

    def pages(self, pages: PageRanges | None = None) -> Iterator[RenderedPage]:
        """Render the pages lazily, in order; only the page being handed out is held.

        `pages` are `(first, last)` ranges, 1-based and inclusive (`schemas.options`; None: every
        page). A range reaching past the end is clipped to the last page; one that starts past
        the end, or is malformed, raises `InputError` here, before anything is rendered.
        """
        if self._closed:
            raise ValueError("the document is closed")
        return self._iter_pages(self.page_indices(pages))

    def page_indices(self, pages: PageRanges | None = None) -> list[int]:
        """The 0-based indices `pages` selects, in order (same rules as `pages`)."""
        return page_indices(pages, self.page_count)

    def render_page(self, index: int) -> RenderedPage:
        """Render one page by 0-based index; a page that cannot be rendered raises
        `CorruptInput` naming it (`DamagedPage` for a blank page of a repaired PDF), and the
        other pages stay usable."""
        if self._closed:
            raise ValueError("the document was closed while its pages were being read")
        return self._render_page(index)

    def text_layer(self, index: int) -> str | None:
        """Page `index`'s text layer as rendering takes it (same extraction and table mode),
        for a page rendered without it; None when it has none (always for images). A page whose
        text cannot be read raises `CorruptInput` naming it."""
        if self._closed:
            raise ValueError("the document is closed")
        return self._text_layer(index)

    def render_image(self, index: int, scale: float) -> Image.Image:
        """Page `index` as an RGB image `scale` times the model's page size (figures are cut
        from it); raises `CorruptInput` like `render_page`. An image page is never enlarged
        past its own pixels: upscaling adds none."""
        if self._closed:
            raise ValueError("the document is closed")
        return self._render_image(index, scale)

    def _iter_pages(self, indices: list[int]) -> Iterator[RenderedPage]:
        for index in indices:
            yield self.render_page(index)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def _render_page(self, index: int) -> RenderedPage: ...

    @abstractmethod
    def _render_image(self, index: int, scale: float) -> Image.Image: ...

    def _text_layer(self, index: int) -> str | None:
        return None

    @abstractmethod
    def _release(self) -> None: ...


def open_document(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    text_layer_tables: TableMode = "ruled",
    defer_text_layer: bool = False,
) -> Document:
    """Validate `data` and open it for rendering; raises an `InputError` subclass if unusable.

    `text_layer_tables` is how hard each PDF page's text layer looks for tables (see
    `ocrflux.textlayer`): the `local` engine reads pages from it, the `vllm` engine only uses
    it for pages the model fails, so it can skip the costly table finder ("never").
    `defer_text_layer` renders PDF pages without their text layer (`Document.text_layer`
    takes one later); a repaired PDF takes them anyway (`Document.defer_text_layer`).
    """
    if len(data) > max_bytes:
        raise TooLarge(f"the document is {len(data)} bytes; the limit is {max_bytes}")
    kind = sniff(data)
    if kind is DocumentKind.PDF:
        return _PdfDocument.open(
            data, max_pages=max_pages, tables=text_layer_tables, defer=defer_text_layer
        )
    return _ImageDocument.open(data, kind, max_pages=max_pages, max_pixels=max_pixels)


def _check_page_count(count: int, max_pages: int) -> None:
    if count > max_pages:
        raise TooManyPages(f"the document has {count} pages; the limit is {max_pages}")


def _drain_mupdf_warnings(context: str) -> None:
    # PyMuPDF keeps every MuPDF warning in a process-wide list that only grows; a long-running
    # worker fed broken PDFs must empty it. We keep them for debugging, attributed to the input.
    warnings = pymupdf.TOOLS.mupdf_warnings(reset=True)
    if warnings:
        logger.debug("MuPDF warnings for %s: %s", context, warnings.replace("\n", "; "))


class _PdfDocument(Document):
    def __init__(
        self, doc: pymupdf.Document, page_count: int, tables: TableMode, defer: bool
    ) -> None:
        super().__init__(
            DocumentKind.PDF,
            page_count,
            repaired=bool(doc.is_repaired),
            tables=tables,
            defer_text_layer=defer,
        )
        self._doc = doc

    @classmethod
    def open(
        cls, data: bytes, *, max_pages: int, tables: TableMode, defer: bool = False
    ) -> _PdfDocument:
        with _PYMUPDF_LOCK:
            return cls._open(data, max_pages, tables, defer)

    @classmethod
    def _open(cls, data: bytes, max_pages: int, tables: TableMode, defer: bool) -> _PdfDocument:
        try:
            doc = pymupdf.open(stream=data, filetype="pdf")
        except _PDF_ERRORS as exc:
            raise CorruptInput(f"the PDF cannot be read: {exc}") from exc
        try:
            # An owner password alone (restrictions only) opens with the empty user password.
            if doc.needs_pass:
                raise EncryptedInput("the PDF is password-protected")
            try:
                count = doc.page_count
                if count == 0:
                    raise CorruptInput("the PDF has no pages")
                _check_page_count(count, max_pages)
                doc.load_page(0)
            except _PDF_ERRORS as exc:
                raise CorruptInput(f"the PDF's pages cannot be read: {exc}") from exc
        except InputError:
            doc.close()
            raise
        finally:
            _drain_mupdf_warnings("opening a PDF")
        if doc.is_repaired:
            logger.info("PDF was damaged and repaired on opening (%d pages)", count)
        return cls(doc, count, tables, defer)

    def _render_page(self, index: int) -> RenderedPage:
        with _PYMUPDF_LOCK:
            width, height, pixels, text_layer = self._render(index)
        # Encoding needs no MuPDF and deflate releases the GIL: encoding outside the lock lets
        # another thread rasterise the next page meanwhile.
        png = pixels if isinstance(pixels, bytes) else _samples_png(pixels)
        deferred = self.defer_text_layer
        return RenderedPage(index, png, width, height, text_layer, text_layer_deferred=deferred)

    def _render(self, index: int) -> tuple[int, int, bytes | _Samples, TextLayer | None]:
        """(width, height, PNG or the pixels to encode, text layer: None when deferred); call
        under the lock."""
        try:
            page = self._doc.load_page(index)
            rect = page.rect
            width, height = target_size(rect.width, rect.height)
            # Independent x and y scales land on exactly the reference's integer size; page.rect
            # is the visible (crop) box with /Rotate already applied.
            matrix = pymupdf.Matrix(width / rect.width, height / rect.height)
            pixmap = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
            pixels: bytes | _Samples | None = None
            if (pixmap.width, pixmap.height) == (width, height):
                pixels = _rgb_samples(pixmap)
            if pixels is None:  # MuPDF rounds the pixmap outwards: never seen, but the size is
                # our contract (and any other pixel layout goes through Pillow as well)
                pixels = _encode_png(pixmap.pil_image().resize((width, height), _LANCZOS))
            text_layer = (
                None
                if self.defer_text_layer
                else extract_text_layer(page, tables=self.text_layer_tables)
            )
            if self.repaired and text_layer is None and _one_colour(pixmap):
                raise DamagedPage(
                    f"page {index + 1} of {self.page_count} came out blank from a damaged, "
                    f"repaired file: its content was probably lost"
                )
        except _PDF_ERRORS as exc:
            raise CorruptInput(
                f"page {index + 1} of {self.page_count} could not be rendered: {exc}"
            ) from exc
        finally:
            _drain_mupdf_warnings(f"PDF page {index + 1}")
        return width, height, pixels, text_layer

    def _text_layer(self, index: int) -> str | None:
        with _PYMUPDF_LOCK:
            if self._closed:  # checked under the lock: `close` may run on another thread
                raise ValueError("the document is closed")
            try:
                page = self._doc.load_page(index)
                return extract_text_layer(page, tables=self.text_layer_tables)
            except _PDF_ERRORS as exc:
                raise CorruptInput(
                    f"the text layer of page {index + 1} of {self.page_count} cannot be read: {exc}"
                ) from exc
            finally:
                _drain_mupdf_warnings(f"PDF page {index + 1}")

    def _render_image(self, index: int, scale: float) -> Image.Image:
        try:
            with _PYMUPDF_LOCK:
                page = self._doc.load_page(index)
                rect = page.rect
                width, height = target_size(rect.width, rect.height)
                matrix = pymupdf.Matrix(width * scale / rect.width, height * scale / rect.height)
                pixmap = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
                size = (pixmap.width, pixmap.height)
                return Image.frombytes(
                    "RGB", size, bytes(pixmap.samples), "raw", "RGB", pixmap.stride
                )
        except _PDF_ERRORS as exc:
            raise CorruptInput(
                f"page {index + 1} of {self.page_count} could not be rendered: {exc}"
            ) from exc
        finally:
            _drain_mupdf_warnings(f"PDF page {index + 1}")

    def _release(self) -> None:
        with _PYMUPDF_LOCK:
            self._doc.close()


class _ImageDocument(Document):
    """A single image, or every frame of a multi-page TIFF."""

    def __init__(
        self, kind: DocumentKind, image: Image.Image, page_count: int, data: bytes
    ) -> None:
        super().__init__(kind, page_count)
        self._image = image
        self._data = data  # `render_image` decodes afresh, at full size
        self._raw_size = image.size  # before JPEG draft scaling; JPEGs have one frame
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, data: bytes, kind: DocumentKind, *, max_pages: int, max_pixels: int
    ) -> _ImageDocument:
        try:
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]])
        except Image.DecompressionBombError as exc:
            raise TooLarge(f"the image has too many pixels: {exc}") from exc
        except _IMAGE_ERRORS as exc:
            raise CorruptInput(f"the {kind.name} image cannot be read: {exc}") from exc
        try:
            count = getattr(image, "n_frames", 1) if kind is DocumentKind.TIFF else 1
            _check_page_count(count, max_pages)
            for index in range(count):  # TIFF frames: reads each header, decodes nothing
                image.seek(index)
                _check_pixels(image, index, count, max_pixels)
            image.seek(0)
            document = cls(kind, image, count, data)
            document._load_frame(0)  # decode now so a damaged image fails here, not later
        except InputError:
            image.close()
            raise
        except Image.DecompressionBombError as exc:
            image.close()
            raise TooLarge(f"the image has too many pixels: {exc}") from exc
        except _IMAGE_ERRORS as exc:
            image.close()
            raise CorruptInput(f"the {kind.name} image cannot be decoded: {exc}") from exc
        return document

    def _load_frame(self, index: int) -> Image.Image:
        # The decoded frame stays cached in the Pillow image until the next seek, so the decode
        # done by `open` to validate frame 0 is the one that frame 0's rendering uses.
        image = self._image
        if image.tell() != index:
            image.seek(index)
        if self.kind is DocumentKind.JPEG:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while both sides stay >= the target.
            image.draft(None, (TARGET_LONGEST_SIDE, TARGET_LONGEST_SIDE))
        image.load()
        return image

    def _render_page(self, index: int) -> RenderedPage:
        try:
            with self._lock:  # one Pillow image holds the current frame: one page at a time
                frame = self._load_frame(index)
                decoded_size = frame.size
                oriented = ImageOps.exif_transpose(frame)  # Pillow's TIFF reader does this
                raw_width, raw_height = self._raw_size if index == 0 else decoded_size
                if oriented.size != decoded_size:  # rotated by a quarter turn
                    raw_width, raw_height = raw_height, raw_width
                width, height = target_size(raw_width, raw_height)
                resized = _to_l_or_rgb(oriented).resize((width, height), _LANCZOS)
            png = _encode_png(resized.convert("RGB") if resized.mode != "RGB" else resized)
        except _IMAGE_ERRORS as exc:
            raise CorruptInput(
                f"page {index + 1} of {self.page_count} could not be decoded: {exc}"
            ) from exc
        return RenderedPage(index, png, width, height, None)

    def _render_image(self, index: int, scale: float) -> Image.Image:
        try:
            with Image.open(io.BytesIO(self._data), formats=[_PIL_FORMATS[self.kind]]) as image:
                image.seek(index)
                if self.kind is DocumentKind.JPEG:
                    side = round(TARGET_LONGEST_SIDE * scale)
                    image.draft(None, (side, side))
                oriented = _to_l_or_rgb(ImageOps.exif_transpose(image))
                width, height = target_size(*oriented.size)
                size = (round(width * scale), round(height * scale))
                if size[0] < oriented.width:
                    oriented = oriented.resize(size, _LANCZOS)
                return oriented.convert("RGB")
        except _IMAGE_ERRORS as exc:
            raise CorruptInput(
                f"page {index + 1} of {self.page_count} could not be decoded: {exc}"
            ) from exc

    def _release(self) -> None:
        self._image.close()


def _check_pixels(image: Image.Image, index: int, count: int, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        where = f"page {index + 1} of {count}" if count > 1 else "the image"
        raise TooLarge(f"{where} is {width} x {height} px; the limit is {max_pixels} pixels")
    if width == 0 or height == 0:
        raise CorruptInput(f"the image has no area ({width} x {height})")


def _to_l_or_rgb(image: Image.Image) -> Image.Image:
    """8-bit grey or RGB for any Pillow mode; transparency is flattened onto white, as on paper.

    Grey stays grey until after the resize, which then handles a third of the bytes.
    """
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I") or mode == "F":
        return _scale_to_8bit(image)
    if mode == "P" and image.has_transparency_data:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    try:
        return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, ...
    except ValueError as exc:
        raise UnsupportedType(f"images in colour mode {mode} are not supported") from exc


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    # Pillow's own I;16 -> L conversion clips at 255 (a 16-bit page turns white); scale instead.
    if image.mode.startswith("I;16"):
        factor = 1 / 257
        image = image.convert("I")
    else:  # 32-bit integer or float samples: scale by the range actually used
        high = float(image.getextrema()[1])  # type: ignore[arg-type]  # one band: (low, high)
        if image.mode == "F" and 0 < high <= 1:
            factor = 255.0
        elif high <= 255:
            factor = 1.0
        elif high <= 65535:
            factor = 1 / 257
        else:
            factor = 255 / high
    return image.point(lambda value: value * factor).convert("L")


#: zlib level of the PNGs made from PDF pages (see `_samples_png`). Level 1 (zlib-ng's quick
#: deflate) would cost a dense 724 x 1024 text page in RGB 3.8 CPU-ms for 174 KB instead of
#: 6.3 ms for 143 KB, but its larger page records raised the recognize worker's peak memory on a
#: 1,000-page document from 106 to 133 MB (bench_memory, 2026-12-03); level 2 saves 0.3 ms.
PNG_ZLIB_LEVEL = 3


def _deflate() -> Callable[[bytes | bytearray, int], bytes]:
    """zlib-ng's `compress` when it is installed, else zlib's: the same format (any PNG reader
    decodes it to the same pixels) for a quarter to a half of the CPU (at level 3, 724 x 1024 px:
    a sparse page 1.7 vs 5.8 ms, 24 vs 31 KB; a dense one 6.6 vs 12.1 ms, 173 vs 144 KB)."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib.compress
    return zlib_ng.compress


_compress = _deflate()


@dataclass(frozen=True, slots=True)
class _Samples:
    """A rendered page's 8-bit RGB pixels, rows packed, copied out of MuPDF's memory."""

    data: bytes
    width: int
    height: int


def _rgb_samples(pixmap: pymupdf.Pixmap) -> _Samples | None:
    """The pixmap's pixels; None for a layout other than packed 8-bit RGB without alpha."""
    if pixmap.n != 3 or pixmap.alpha or pixmap.stride != pixmap.width * 3:
        return None
    return _Samples(pixmap.samples, pixmap.width, pixmap.height)


def _pixmap_png(pixmap: pymupdf.Pixmap) -> bytes:
    """A pixmap as the PNG a page is sent as (see `_samples_png`).

    MuPDF's own `tobytes("png")` costs about eight times the CPU (21 vs 2.7 ms for a 724 x 1024
    text page with zlib-ng, `_deflate`) and holds the GIL throughout, where deflate releases it.
    The pixels are the same; only the encoding differs.
    """
    samples = _rgb_samples(pixmap)
    if samples is None:
        return bytes(pixmap.tobytes("png"))
    return _samples_png(samples)


def _one_colour(pixmap: pymupdf.Pixmap) -> bool:
    # PyMuPDF's `is_unicolor` reads the samples one call at a time (seconds per page).
    samples, n = pixmap.samples, pixmap.n
    return samples == samples[:n] * (len(samples) // n)


#: Rows looked at before the whole page, so a colour page is told from a grey one at once.
_GREY_PROBE_ROWS = 16


def _samples_png(samples: _Samples) -> bytes:
    """A page's pixels as a PNG: rows unfiltered, one zlib stream at level `PNG_ZLIB_LEVEL`;
    8-bit grey when every pixel is grey (R = G = B), else 8-bit RGB.

    Most pages are black and white: in grey a text page deflates a third of the data and its PNG
    is about a quarter of the size (724 x 1024 px: 37 instead of 141 KB, 4.7 instead of 6.2 ms
    with the check), so page records, model requests and the pages a worker holds shrink alike.
    The model sees the same pixels: vLLM converts every image to RGB before the processor (its
    `ImageMediaIO` default mode), and Pillow, the OCR engine and the test double do the same.
    """
    data, width, height = samples.data, samples.width, samples.height
    row_bytes = width * 3
    if _grey_at_a_glance(data, row_bytes, height):
        # Pillow packs each channel out of the pixels in C; equal channels make a grey page.
        pixels = Image.frombuffer("RGB", (width, height), data, "raw", "RGB", 0, 1)
        plane = _padded_rows(pixels, "R", width)
        if plane == _padded_rows(pixels, "G", width) and plane == _padded_rows(pixels, "B", width):
            return _png(_scanlines(plane), samples, GREY)
    # The RGB bytes as a grey image three times as wide: Pillow maps them instead of copying.
    rgb_bytes = Image.frombuffer("L", (row_bytes, height), data, "raw", "L", 0, 1)
    return _png(_scanlines(_padded_rows(rgb_bytes, "L", row_bytes)), samples, RGB)


def _grey_at_a_glance(data: bytes, stride: int, height: int) -> bool:
    """Whether `_GREY_PROBE_ROWS` rows spread over the page are all grey: a colour page is
    told at once, without packing its channels."""
    for y in range(0, height, max(1, height // _GREY_PROBE_ROWS)):
        row = data[y * stride : (y + 1) * stride]
        red = row[0::3]
        if red != row[1::3] or red != row[2::3]:
            return False
    return True


def _padded_rows(image: Image.Image, rawmode: str, row_bytes: int) -> bytes:
    """`image` packed as `rawmode`, each row followed by one zero byte (Pillow pads rows to the
    stride it is given)."""
    return image.tobytes("raw", (rawmode, row_bytes + 1))


def _scanlines(padded: bytes) -> bytes:
    """PNG scanlines (each row its filter byte 0, none, then its bytes) from `_padded_rows`:
    each row's padding is the next row's filter byte, so one zero goes in front and the last
    row's padding comes off."""
    return b"".join((b"\x00", memoryview(padded)[:-1]))


def _png(rows: bytes, samples: _Samples, colour_type: int) -> bytes:
    return png_file(samples.width, samples.height, colour_type, _compress(rows, PNG_ZLIB_LEVEL))


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
