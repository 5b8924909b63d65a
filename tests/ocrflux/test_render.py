from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pymupdf
import pytest
from PIL import Image

from ocrflux.errors import (
    CorruptInput,
    DamagedPage,
    EmptyInput,
    EncryptedInput,
    InputError,
    TooLarge,
    TooManyPages,
    UnsupportedType,
)
from ocrflux.pages import RenderedPage
from ocrflux.render import (
    REPAIRED,
    TARGET_LONGEST_SIDE,
    Document,
    open_document,
    target_size,
)
from ocrflux.sniff import DocumentKind
from schemas.page_ranges import parse_pages
from tests.ocrflux.docgen import (
    A4,
    LETTER,
    make_empty_pdf,
    make_image,
    make_pdf,
    make_tiff,
    make_zip,
)


def render_all(data: bytes, **limits: int) -> list[RenderedPage]:
    with open_document(data, **limits) as document:
        return list(document.pages())


def decode(page: RenderedPage) -> Image.Image:
    image = Image.open(io.BytesIO(page.png))
    assert image.format == "PNG"
    assert image.size == (page.width, page.height)
    return image


def is_red(pixel: object) -> bool:
    red, green, blue = pixel  # type: ignore[misc]
    return red > 200 and green < 60 and blue < 60


def red_corners(image: Image.Image) -> set[str]:
    """Which corners of the image show the red marker."""
    w, h = image.size
    points = {
        "top-left": (3, 3),
        "top-right": (w - 4, 3),
        "bottom-left": (3, h - 4),
        "bottom-right": (w - 4, h - 4),
    }
    return {name for name, xy in points.items() if is_red(image.getpixel(xy))}


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: the shape of a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + checksum

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(1024)))
        + chunk(b"IEND", b"")
    )


# --- geometry ------------------------------------------------------------------------------


def test_target_size_follows_the_reference_formula() -> None:
    assert target_size(595, 842) == (723, 1024)
    assert target_size(612, 792) == (791, 1024)
    assert target_size(842, 595) == (1024, 723)
    assert target_size(500, 500) == (1024, 1024)
    assert target_size(1, 5000) == (1, 1024)  # never zero
    with pytest.raises(ValueError):
        target_size(0, 100)


def test_a4_renders_to_723_or_724_by_1024() -> None:
    [page] = render_all(make_pdf(["A4"], size=A4))
    assert page.width in (723, 724)
    assert page.height == TARGET_LONGEST_SIDE
    image = decode(page)
    assert image.mode == "L"  # black text on white: grey, no alpha


def test_letter_renders_to_791_by_1024() -> None:
    [page] = render_all(make_pdf(["Letter"], size=LETTER))
    assert (page.width, page.height) == (791, 1024)
    decode(page)


def test_landscape_page() -> None:
    [page] = render_all(make_pdf(["wide"], size=(842, 595), marker=True))
    assert (page.width, page.height) == (1024, 723)
    assert red_corners(decode(page)) == {"top-left"}


@pytest.mark.parametrize(
    ("rotation", "corner"),
    [(0, "top-left"), (90, "top-right"), (180, "bottom-right"), (270, "bottom-left")],
)
def test_rotate_is_respected(rotation: int, corner: str) -> None:
    [page] = render_all(make_pdf(["turned"], size=A4, rotation=rotation, marker=True))
    expected = (723, 1024) if rotation in (0, 180) else (1024, 723)
    assert (page.width, page.height) == expected
    assert red_corners(decode(page)) == {corner}


def test_cropbox_is_the_visible_area() -> None:
    data = make_pdf(["cropped"], size=A4, cropbox=(0, 0, 300, 400), marker=True)
    [page] = render_all(data)
    assert (page.width, page.height) == (768, 1024)
    assert red_corners(decode(page)) == {"top-left"}


def test_tiny_and_huge_pages_still_get_the_target_size() -> None:
    pages = render_all(make_pdf([None, None], size=[(72, 36), (14400, 7200)]))
    assert [(p.width, p.height) for p in pages] == [(1024, 512), (1024, 512)]


# --- text layer ----------------------------------------------------------------------------


def test_text_layer_of_a_born_digital_page() -> None:
    first, blank = render_all(make_pdf(["Quarterly revenue rose", None]))
    assert first.text_layer == "Quarterly revenue rose"
    assert blank.text_layer is None


def test_images_have_no_text_layer() -> None:
    [page] = render_all(make_image("PNG"))
    assert page.text_layer is None


# --- pages(), ranges and laziness ----------------------------------------------------------


def five_pages() -> bytes:
    return make_pdf([f"Page {n}" for n in range(1, 6)])


def test_page_range_selects_and_keeps_document_indexes() -> None:
    with open_document(five_pages()) as document:
        assert document.kind is DocumentKind.PDF
        assert document.page_count == 5
        pages = list(document.pages(((2, 4),)))
    assert [p.index for p in pages] == [1, 2, 3]
    assert [p.text_layer for p in pages] == ["Page 2", "Page 3", "Page 4"]


def test_page_range_past_the_end_is_clipped() -> None:
    with open_document(five_pages()) as document:
        assert [p.index for p in document.pages(((4, 99),))] == [3, 4]
        assert [p.index for p in document.pages(((5, 5),))] == [4]


@pytest.mark.parametrize("page_range", [(6, 6), (0, 2), (3, 2), (-1, 1)])
def test_bad_page_ranges_fail_before_rendering(page_range: tuple[int, int]) -> None:
    with open_document(five_pages()) as document, pytest.raises(InputError) as info:
        document.pages((page_range,))
    assert type(info.value) is InputError
    assert info.value.code == "invalid_input"


def test_several_ranges_select_pages_in_document_order() -> None:
    with open_document(make_pdf([f"Page {n}" for n in range(1, 11)])) as document:
        assert document.page_indices(parse_pages("7,1-3")) == [0, 1, 2, 6]
        pages = list(document.pages(parse_pages("9-20,2")))
    assert [p.index for p in pages] == [1, 8, 9]
    assert [p.text_layer for p in pages] == ["Page 2", "Page 9", "Page 10"]


def test_a_range_past_the_end_among_several_fails_before_rendering() -> None:
    with open_document(five_pages()) as document, pytest.raises(InputError, match="7 starts"):
        document.page_indices(parse_pages("1-2,7"))


def test_pages_renders_lazily_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    original = pymupdf.Page.get_pixmap

    def counting(self: pymupdf.Page, *args: object, **kwargs: object) -> pymupdf.Pixmap:
        rendered.append(self.number)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", counting)
    with open_document(five_pages()) as document:
        pages = document.pages()
        assert isinstance(pages, Iterator)
        assert rendered == []
        assert next(pages).index == 0
        assert rendered == [0]
        assert next(pages).index == 1
        assert rendered == [0, 1]


def test_a_page_failing_mid_document_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    original = pymupdf.Page.get_pixmap

    def failing_on_third(self: pymupdf.Page, *args: object, **kwargs: object) -> pymupdf.Pixmap:
        if self.number == 2:
            raise pymupdf.mupdf.FzErrorFormat("syntax error in content stream")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", failing_on_third)
    with open_document(five_pages()) as document:
        pages = document.pages()
        assert [next(pages).index, next(pages).index] == [0, 1]
        with pytest.raises(CorruptInput, match="page 3 of 5"):
            next(pages)


def test_pixmap_off_by_one_is_resized_to_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    original = pymupdf.Page.get_pixmap

    def rounding_outwards(self: pymupdf.Page, *, matrix: pymupdf.Matrix, **kw: object) -> object:
        return original(self, matrix=matrix * pymupdf.Matrix(1.002, 1.002), **kw)

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", rounding_outwards)
    [page] = render_all(make_pdf(["Letter"], size=LETTER, marker=True))
    assert (page.width, page.height) == (791, 1024)
    assert red_corners(decode(page)) == {"top-left"}


def test_closed_document_refuses_pages() -> None:
    document = open_document(five_pages())
    pages = document.pages()
    next(pages)
    document.close()
    document.close()  # idempotent
    with pytest.raises(ValueError):
        document.pages()
    with pytest.raises(ValueError):
        next(pages)


# --- input errors --------------------------------------------------------------------------


def test_empty() -> None:
    with pytest.raises(EmptyInput):
        open_document(b"")


def test_zip_renamed_pdf_is_unsupported() -> None:
    with pytest.raises(UnsupportedType, match="ZIP"):
        open_document(make_zip({"a.pdf": make_pdf(["x"])}, compress=True))


def test_too_large_is_checked_before_anything_else() -> None:
    data = make_pdf(["x"])
    with pytest.raises(TooLarge) as info:
        open_document(data, max_bytes=len(data) - 1)
    assert info.value.http_status == 413
    assert open_document(data, max_bytes=len(data)).page_count == 1


def test_too_many_pages() -> None:
    with pytest.raises(TooManyPages, match="5 pages"):
        open_document(five_pages(), max_pages=4)


def test_too_many_tiff_frames() -> None:
    data = make_tiff([((20, 20), "white")] * 3)
    with pytest.raises(TooManyPages):
        open_document(data, max_pages=2)


def test_encrypted_pdf_needing_a_password() -> None:
    data = make_pdf(["secret"], user_password="user", owner_password="owner")
    with pytest.raises(EncryptedInput) as info:
        open_document(data)
    assert info.value.code == "encrypted"


def test_owner_password_only_pdf_opens() -> None:
    data = make_pdf(["restricted"], owner_password="owner")
    assert pymupdf.open(stream=data, filetype="pdf").is_encrypted is False  # empty user pw
    assert b"/Encrypt" in data
    [page] = render_all(data)
    assert page.text_layer == "restricted"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 8,
        make_pdf(["x"])[:9] + b"\x00garbage" * 200,
        make_pdf(["x"] * 3)[:40],
        b"%PDF-",
    ],
    ids=["header-then-binary", "real-header-then-garbage", "cut-after-header", "header-only"],
)
def test_unrecoverable_pdfs_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptInput) as info:
        open_document(data)
    assert info.value.code == "corrupt"


def test_pdf_without_pages_is_corrupt() -> None:
    with pytest.raises(CorruptInput, match="no pages"):
        open_document(make_empty_pdf())


def test_pdf_whose_page_count_fails_is_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_pdf(["x"])

    def broken(self: pymupdf.Document) -> int:
        raise RuntimeError("code=7: Invalid number of pages")  # what MuPDF 1.28 says

    monkeypatch.setattr(pymupdf.Document, "page_count", property(broken))
    with pytest.raises(CorruptInput):
        open_document(data)


def test_pdf_whose_first_page_cannot_load_is_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_pdf(["x"])

    def broken(self: pymupdf.Document, number: int = 0) -> pymupdf.Page:
        raise pymupdf.mupdf.FzErrorFormat("cannot find page 0 in page tree")

    monkeypatch.setattr(pymupdf.Document, "load_page", broken)
    with pytest.raises(CorruptInput):
        open_document(data)


def test_truncated_pdf_without_xref_is_repaired_and_accepted() -> None:
    data = make_pdf(["first", "second"])
    truncated = data[: data.rindex(b"xref")]
    with open_document(truncated) as document:
        assert document.repaired is True
        pages = list(document.pages())
    assert [p.text_layer for p in pages] == ["first", "second"]
    assert all(p.height == 1024 for p in pages)


def test_intact_pdf_is_not_marked_repaired() -> None:
    with open_document(make_pdf(["x", None])) as document:
        assert document.repaired is False
        assert document.warnings == []
        blank = document.render_page(1)  # a blank page of an intact file is just blank
    assert blank.text_layer is None


def render_or_damaged(document: Document) -> list[RenderedPage | DamagedPage]:
    """Every page rendered, or the `DamagedPage` it raised."""
    outcomes: list[RenderedPage | DamagedPage] = []
    for index in range(document.page_count):
        try:
            outcomes.append(document.render_page(index))
        except DamagedPage as exc:
            outcomes.append(exc)
    return outcomes


def test_pdf_cut_in_half_warns_and_its_lost_pages_are_damaged_not_blank() -> None:
    data = make_pdf([f"Chapter {n}" for n in range(6)])
    with open_document(data[: len(data) // 2]) as document:
        assert document.repaired is True
        [warning] = document.warnings
        outcomes = render_or_damaged(document)
    assert warning.code == REPAIRED == "repaired"
    assert "damaged and has been repaired" in warning.message
    assert "6 pages may be missing content" in warning.message
    rendered = [o for o in outcomes if isinstance(o, RenderedPage)]
    damaged = [o for o in outcomes if isinstance(o, DamagedPage)]
    # The second half of the file held the last pages' content: they come out blank.
    assert rendered and damaged
    assert [p.text_layer for p in rendered] == [f"Chapter {n}" for n in range(len(rendered))]
    assert all(isinstance(o, DamagedPage) for o in outcomes[len(rendered) :])
    assert damaged[0].code == "damaged_page"
    assert f"page {len(rendered) + 1} of 6 came out blank" in damaged[0].message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    data = make_image(fmt, size=(400, 300), color="navy")
    with pytest.raises(CorruptInput):
        open_document(data[: len(data) // 2])


def test_image_header_followed_by_garbage_is_corrupt() -> None:
    with pytest.raises(CorruptInput):
        open_document(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)


def test_image_over_the_pixel_limit_is_too_large() -> None:
    data = make_image("PNG", size=(400, 300))
    with pytest.raises(TooLarge, match="pixels"):
        open_document(data, max_pixels=400 * 300 - 1)
    assert open_document(data, max_pixels=400 * 300).page_count == 1


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("width", "height"),
    [(9_000, 9_000), (10_000, 10_000), (50_000, 50_000)],
    ids=["our-limit", "pillow-warns", "pillow-refuses"],
)
def test_decompression_bomb_header_is_too_large_without_decoding(width: int, height: int) -> None:
    data = png_claiming(width, height)
    assert len(data) < 200
    with pytest.raises(TooLarge):
        open_document(data)


# --- images --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_each_image_format_renders(fmt: str) -> None:
    [page] = render_all(make_image(fmt, size=(200, 100)))
    assert (page.index, page.width, page.height) == (0, 1024, 512)
    image = decode(page)
    assert image.mode == "RGB"
    assert red_corners(image) == {"top-left"}


def test_large_image_is_downscaled() -> None:
    [page] = render_all(make_image("JPEG", size=(3000, 2000)))
    assert (page.width, page.height) == (1024, 682)
    assert red_corners(decode(page)) == {"top-left"}


@pytest.mark.parametrize(("size", "orientation"), [((2048, 3013), 1), ((3013, 2048), 6)])
def test_jpeg_decoded_at_reduced_scale_keeps_the_exact_geometry(
    size: tuple[int, int], orientation: int
) -> None:
    # libjpeg decodes this at half scale (1024 x 1507); that size alone would give 695, not 696.
    data = make_image("JPEG", size=size, exif_orientation=orientation)
    [page] = render_all(data)
    assert (page.width, page.height) == (696, 1024) == target_size(2048, 3013)
    assert red_corners(decode(page)) == {"top-right" if orientation == 6 else "top-left"}


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [
        (1, (1024, 512), "top-left"),
        (3, (1024, 512), "bottom-right"),
        (6, (512, 1024), "top-right"),  # rotate 90° clockwise to display
        (8, (512, 1024), "bottom-left"),
        (2, (1024, 512), "top-right"),  # mirrored
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_exif_orientation_rotates_the_pixels(
    fmt: str, orientation: int, size: tuple[int, int], corner: str
) -> None:
    data = make_image(fmt, size=(200, 100), exif_orientation=orientation)
    [page] = render_all(data)
    assert (page.width, page.height) == size
    assert red_corners(decode(page)) == {corner}


def test_exif_orientation_on_a_large_jpeg() -> None:
    [page] = render_all(make_image("JPEG", size=(4000, 3000), exif_orientation=6))
    assert (page.width, page.height) == (768, 1024)
    assert red_corners(decode(page)) == {"top-right"}


def test_cmyk_jpeg() -> None:
    data = make_image("JPEG", mode="CMYK", color=(0, 0, 255))
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    [page] = render_all(data)
    image = decode(page)
    assert red_corners(image) == {"top-left"}
    red, green, blue = image.getpixel((page.width // 2, page.height // 2))  # type: ignore[misc]
    assert blue > 200 and red < 60 and green < 60


def test_palette_png() -> None:
    data = make_image("PNG", mode="P", color=(0, 128, 0))
    assert Image.open(io.BytesIO(data)).mode == "P"
    [page] = render_all(data)
    image = decode(page)
    assert red_corners(image) == {"top-left"}
    assert image.getpixel((600, 300)) == (0, 128, 0)


def test_transparency_becomes_white_not_black() -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 50, 100))  # black text on the left, transparent right
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    [page] = render_all(buffer.getvalue())
    flat = decode(page)
    assert flat.getpixel((100, 512)) == (0, 0, 0)
    assert flat.getpixel((900, 512)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["LA", "RGBA", "L", "1"])
def test_other_modes(mode: str) -> None:
    [page] = render_all(make_image("PNG", mode=mode, color="white"))
    assert decode(page).getpixel((900, 400)) == (255, 255, 255)


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (64, 64), 32768)  # mid grey in 16 bits
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I;16")
    [page] = render_all(buffer.getvalue())
    red, green, blue = decode(page).getpixel((512, 512))  # type: ignore[misc]
    assert red == green == blue
    assert 120 <= red <= 135


def test_every_tiff_frame_is_a_page() -> None:
    data = make_tiff([((200, 100), "white"), ((100, 300), (0, 0, 255)), ((50, 50), "green")])
    with open_document(data) as document:
        assert (document.kind, document.page_count) == (DocumentKind.TIFF, 3)
        pages = list(document.pages())
    assert [p.index for p in pages] == [0, 1, 2]
    assert [(p.width, p.height) for p in pages] == [(1024, 512), (341, 1024), (1024, 1024)]
    images = [decode(p) for p in pages]
    assert all(red_corners(image) == {"top-left"} for image in images)
    assert images[1].getpixel((200, 800)) == (0, 0, 255)
    assert images[2].getpixel((800, 800)) == (0, 128, 0)


@pytest.mark.filterwarnings("ignore:Truncated File Read:UserWarning")
def test_tiff_whose_last_frame_is_cut_fails_at_that_page() -> None:
    data = make_tiff([((40, 40), "white"), ((40, 40), "blue"), ((50, 50), "green")])
    with Image.open(io.BytesIO(data)) as probe:
        probe.seek(2)
        last_frame_data = probe.tile[0].offset
    with open_document(data[: last_frame_data + 100]) as document:
        assert document.page_count == 3
        pages = document.pages()
        assert [next(pages).index, next(pages).index] == [0, 1]
        with pytest.raises(CorruptInput, match="page 3 of 3"):
            next(pages)


def test_tiff_page_range() -> None:
    data = make_tiff([((20, 20), "white"), ((20, 20), "blue"), ((20, 20), "green")])
    with open_document(data) as document:
        assert [p.index for p in document.pages(((2, 3),))] == [1, 2]
        assert [p.index for p in document.pages(((1, 1),))] == [0]  # seeks back to frame 0


# --- damaged PDFs, exhaustively ------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage-tail"])
def test_every_damaged_prefix_is_accepted_or_corrupt(damage: str) -> None:
    """Cut a PDF at many points (or overwrite its tail): each result either opens (its pages
    rendering, or raising DamagedPage when repair left them blank) or raises CorruptInput;
    nothing else escapes, whatever MuPDF's repair makes of it."""
    data = make_pdf([f"Page {n}" for n in range(4)], size=LETTER)
    outcomes = {"accepted": 0, "corrupt": 0, "damaged": 0}
    for cut in range(1, len(data), 53):
        damaged = data[:cut]
        if damage == "garbage-tail":
            damaged += bytes((i * 37) % 256 for i in range(len(data) - cut))
        try:
            document = open_document(damaged)
        except CorruptInput:
            outcomes["corrupt"] += 1
            continue
        except UnsupportedType:
            assert cut < len(b"%PDF-")
            continue
        with document:
            pages = render_or_damaged(document)
        rendered = [p for p in pages if isinstance(p, RenderedPage)]
        assert document.repaired or len(rendered) == len(pages)
        assert [p.index for p in rendered] == [
            i for i, p in enumerate(pages) if isinstance(p, RenderedPage)
        ]
        assert all((p.width, p.height) == (791, 1024) for p in rendered)
        outcomes["accepted"] += 1
        outcomes["damaged"] += len(pages) - len(rendered)
    assert outcomes["accepted"] > 0 and outcomes["corrupt"] > 0 and outcomes["damaged"] > 0


# --- threads -------------------------------------------------------------------------------


def test_documents_rendered_from_several_threads_match_sequential_rendering() -> None:
    inputs = [make_pdf([f"Doc {n} page {p}" for p in range(3)], marker=True) for n in range(4)]
    inputs += [make_image("JPEG", size=(900, 600)), make_tiff([((30, 60), "blue")] * 2)]
    sequential = [[(p.index, p.png, p.text_layer) for p in render_all(data)] for data in inputs]

    def render(data: bytes) -> list[tuple[int, bytes, str | None]]:
        return [(p.index, p.png, p.text_layer) for p in render_all(data)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(3):
            assert list(pool.map(render, inputs)) == sequential
