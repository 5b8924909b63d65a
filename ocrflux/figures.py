"""Figures: the boxes OCRFlux-3B marks as `<Image>(left,top),(right,bottom)</Image>`, kept as
cropped PNGs instead of dropped (protocol, "Page text to elements", step 2, ours).

1. Recognition (`page_figures`): each box is read from the page answer with its position among
   the page's elements, in fractions of the page, so neither the element numbering the
   merge-detection prompt uses nor anything else about the text changes. A box that is not
   inside the page, is inverted or has no area is ignored with a `figure_ignored` warning,
   never a failure: the model's coordinates are a guess, the text is what matters.
2. Assembly (`ocrflux.document.build_result`, with `figures=crop`): the figures are numbered in
   reading order (`document_figures`) and their Markdown (`figure_markdown`) stands where they
   stood, linked by file name.
3. Cropping (`crop_figures`): each page with figures is rendered `figure_scale` times larger
   than the model saw it (default 2) and the boxes are cut from it. The driver then carries the
   PNGs inline (`with_crops`) or stores them and keeps references (`with_refs`).
4. Writing (`link_figures`): a result written as `<stem>.md` gets its figures in
   `<stem>_figures/` and its links rewritten to that folder.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import pybase64

from ocrflux.errors import OcrfluxError
from ocrflux.page_parse import is_figure, page_pieces
from schemas.results import DocumentResult, ErrorInfo, Figure, FigureBox, PageFigure, PageResult

if TYPE_CHECKING:  # writers of results link figures without loading PyMuPDF or Pillow
    from PIL import Image

    from ocrflux.pages import OpenedDocument

__all__ = [
    "FIGURE_IGNORED",
    "FIGURE_MAX_BYTES",
    "FIGURE_UNAVAILABLE",
    "Crop",
    "crop_box",
    "crop_figures",
    "document_figures",
    "figure_files",
    "figure_markdown",
    "figure_name",
    "figure_pngs",
    "figures_folder",
    "link_figures",
    "page_figures",
    "with_crops",
    "with_refs",
    "without_figures",
]

R = TypeVar("R", bound=DocumentResult)

#: The most bytes a reader takes for one figure: a crop of a page rendered at most 4x the
#: model's 1,024 px is a few MB as PNG; anything far larger is not a figure of ours.
FIGURE_MAX_BYTES = 64 * 1024 * 1024

#: The warning code of a box that was ignored.
FIGURE_IGNORED = "figure_ignored"
#: The warning code of a figure that could not be cropped or stored (its link stays).
FIGURE_UNAVAILABLE = "figure_unavailable"

#: Pixels a box may reach past the page edge and still count as inside (rounding in the answer).
_EDGE_SLACK = 2.0

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(rf"<Image>\s*\({_NUMBER},{_NUMBER}\)\s*,\s*\({_NUMBER},{_NUMBER}\)\s*</Image>")


def _box_problem(box: tuple[float, float, float, float], width: int, height: int) -> str | None:
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        return "is inverted or has no area"
    inside = (
        min(left, top) >= -_EDGE_SLACK
        and right <= width + _EDGE_SLACK
        and bottom <= height + _EDGE_SLACK
    )
    return None if inside else f"is not inside the {width}x{height} page"


def _fraction(value: float, size: int) -> float:
    return min(1.0, max(0.0, value / size))


def page_figures(
    natural_text: str | None, page: int, width: int, height: int
) -> tuple[list[PageFigure], list[ErrorInfo]]:
    """The figures of one page answer (`width` x `height`: the image the model saw), and a
    warning for each box that was ignored."""
    figures: list[PageFigure] = []
    warnings: list[ErrorInfo] = []
    position = 0
    for piece in page_pieces(natural_text):
        if not is_figure(piece):
            position += 1
            continue
        match = _BOX.fullmatch(piece.strip())
        pixels = tuple(float(value) for value in match.groups()) if match else None
        problem = (
            "has no readable coordinates" if pixels is None else _box_problem(pixels, width, height)  # type: ignore[arg-type]
        )
        if pixels is None or problem is not None:
            warnings.append(
                ErrorInfo(
                    code=FIGURE_IGNORED,
                    message=f"page {page + 1}: figure box {piece[:80]!r} {problem}; ignored",
                )
            )
            continue
        left, top, right, bottom = pixels
        box = FigureBox(
            left=_fraction(left, width),
            top=_fraction(top, height),
            right=_fraction(right, width),
            bottom=_fraction(bottom, height),
        )
        figures.append(PageFigure(position=position, box=box))
    return figures, warnings


def figure_name(number: int, page: int) -> str:
    """The file name of the document's `number`-th figure (1-based) on 0-based `page`."""
    return f"figure-{number:03d}-page-{page + 1}.png"


def figure_markdown(figure: Figure, link: str | None = None) -> str:
    """The Markdown that stands where the figure stood (`link`: default its file name)."""
    return f"![Figure {figure.number}, page {figure.page + 1}](<{link or figure.name}>)"


def document_figures(done: Mapping[int, PageResult]) -> dict[int, list[tuple[PageFigure, Figure]]]:
    """Every page's figures, numbered from 1 in reading order, by 0-based page."""
    numbered: dict[int, list[tuple[PageFigure, Figure]]] = {}
    number = 0
    for index, page in sorted(done.items()):
        for marked in page.figures:
            number += 1
            figure = Figure(
                number=number, page=index, name=figure_name(number, index), box=marked.box
            )
            numbered.setdefault(index, []).append((marked, figure))
    return numbered


@dataclass(frozen=True, slots=True)
class Crop:
    png: bytes
    width: int
    height: int


def crop_box(image: Image.Image, box: FigureBox) -> Crop:
    """`box` cut out of `image` (the page at any size) as PNG, widened to whole pixels so the
    figure is never cut short."""
    region = (
        max(0, math.floor(box.left * image.width)),
        max(0, math.floor(box.top * image.height)),
        min(image.width, math.ceil(box.right * image.width)),
        min(image.height, math.ceil(box.bottom * image.height)),
    )
    cropped = image.crop(region)
    buffer = io.BytesIO()
    cropped.save(buffer, format="PNG", compress_level=6)
    return Crop(buffer.getvalue(), cropped.width, cropped.height)


def crop_figures(
    document: OpenedDocument, figures: Sequence[Figure], scale: float
) -> tuple[dict[int, Crop], list[ErrorInfo]]:
    """Each figure cropped from its page rendered `scale` times larger, by figure number
    (synchronous CPU work: run it in an executor). A page that cannot be rendered costs its
    figures, with a warning each, not the document."""
    crops: dict[int, Crop] = {}
    warnings: list[ErrorInfo] = []
    by_page: dict[int, list[Figure]] = {}
    for figure in figures:
        by_page.setdefault(figure.page, []).append(figure)
    for page, on_page in sorted(by_page.items()):
        try:
            image = document.render_image(page, scale)
        except OcrfluxError as exc:
            warnings.extend(unavailable(figure, exc.message) for figure in on_page)
            continue
        with image:
            for figure in on_page:
                crops[figure.number] = crop_box(image, figure.box)
    return crops, warnings


def unavailable(figure: Figure, why: str) -> ErrorInfo:
    return ErrorInfo(
        code=FIGURE_UNAVAILABLE,
        message=f"figure {figure.number} (page {figure.page + 1}) is not available: {why}",
    )


def _with_figures(result: R, update: Callable[[Figure], Figure | None], why: str) -> R:
    figures, warnings = [], list(result.warnings)
    for figure in result.figures:
        changed = update(figure)
        if changed is None:
            warnings.append(unavailable(figure, why))
            changed = figure
        figures.append(changed)
    return result.model_copy(update={"figures": figures, "warnings": warnings})


def without_figures(result: R, why: str) -> R:
    """The result with a `figure_unavailable` warning for each of its figures."""
    return _with_figures(result, lambda figure: None, why)


def with_crops(result: R, crops: Mapping[int, Crop]) -> R:
    """The result carrying each figure's PNG inline (base64 in JSON)."""

    def inline(figure: Figure) -> Figure | None:
        crop = crops.get(figure.number)
        if crop is None:
            return None
        data = pybase64.b64encode_as_string(crop.png)
        return figure.model_copy(update={"data": data, "width": crop.width, "height": crop.height})

    return _with_figures(result, inline, "it could not be cropped")


def with_refs(result: R, crops: Mapping[int, Crop], refs: Mapping[int, str]) -> R:
    """The result listing where each figure's PNG was stored (`refs` by figure number)."""

    def stored(figure: Figure) -> Figure | None:
        crop, ref = crops.get(figure.number), refs.get(figure.number)
        if crop is None or ref is None:
            return None
        return figure.model_copy(update={"ref": ref, "width": crop.width, "height": crop.height})

    return _with_figures(result, stored, "it could not be cropped or stored")


def figure_bytes(figure: Figure) -> bytes | None:
    """The PNG carried inline, or None."""
    return pybase64.b64decode(figure.data) if figure.data is not None else None


def figures_folder(stem: str) -> str:
    """The folder a result written as `<stem>.md` keeps its figures in, beside it."""
    return f"{stem}_figures"


def link_figures(result: R, folder: str, *, keep_data: bool = False) -> R:
    """The result as written beside `folder/`: Markdown links and each figure's `ref` point
    into it, block offsets follow, and the inline PNGs are dropped unless `keep_data`."""
    if not result.figures:
        return result
    links = {figure.number: f"{folder}/{figure.name}" for figure in result.figures}
    by_number = {figure.number: figure for figure in result.figures}
    text = result.document_text
    pieces: list[str] = []
    blocks = []
    cursor = shift = 0
    for block in result.blocks:
        pieces.append(text[cursor : block.start])
        body = text[block.start : block.end]
        if block.figure is not None and block.figure in by_number:
            body = figure_markdown(by_number[block.figure], links[block.figure])
        start = block.start + shift
        shift += len(body) - (block.end - block.start)
        blocks.append(replace(block, start=start, end=start + len(body)))
        pieces.append(body)
        cursor = block.end
    pieces.append(text[cursor:])
    linked = "".join(pieces)
    if not result.blocks:  # a result without its blocks (written before they existed)
        for number, figure in by_number.items():
            linked = linked.replace(figure_markdown(figure), figure_markdown(figure, links[number]))
    figures = [
        figure.model_copy(
            update={"ref": links[figure.number], "data": figure.data if keep_data else None}
        )
        for figure in result.figures
    ]
    content = linked if result.output_format == "markdown" else result.content
    return result.model_copy(
        update={"document_text": linked, "content": content, "blocks": blocks, "figures": figures}
    )


async def figure_pngs(
    result: DocumentResult, fetch: Callable[[str], Awaitable[bytes]]
) -> tuple[dict[int, bytes], list[ErrorInfo]]:
    """Every figure's PNG by number: carried inline, or fetched from its `ref` with `fetch`
    (the caller's blob fetcher). A figure that cannot be had is a warning, not a failure."""
    pngs: dict[int, bytes] = {}
    warnings: list[ErrorInfo] = []
    for figure in result.figures:
        inline = figure_bytes(figure)
        if inline is not None:
            pngs[figure.number] = inline
        elif figure.ref is not None and "://" in figure.ref:
            try:
                pngs[figure.number] = await fetch(figure.ref)
            except OcrfluxError as exc:
                warnings.append(unavailable(figure, exc.message))
        else:
            warnings.append(unavailable(figure, "the result holds neither its PNG nor a URL"))
    return pngs, warnings


def figure_files(result: R, stem: str, pngs: Mapping[int, bytes]) -> tuple[R, dict[str, bytes]]:
    """The result as written as `<stem>.<suffix>`: linked into `<stem>_figures/`, and the
    files to write there (paths relative to the result's folder)."""
    folder = figures_folder(stem)
    files = {f"{folder}/{f.name}": pngs[f.number] for f in result.figures if f.number in pngs}
    return link_figures(result, folder), files
