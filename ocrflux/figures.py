"""Figures: the boxes OCRFlux-3B marks as `<Image>(left,top),(right,bottom)</Image>`, kept as
cropped PNGs instead of dropped (protocol, "Page text to elements", step 2, ours).

A box is in pixels of the page image the model saw (longest side 1024). It is cropped from the
same page rendered larger (`DEFAULT_FIGURE_SCALE` times by default), so a figure keeps detail the
model did not need. A box that is not inside the page, is inverted or has no area is ignored
with a warning, never a failure: the model's coordinates are a guess, the text is what matters.

A figure's `position` counts the page's elements before it, so it stays where it stood without
changing the element numbering the merge-detection prompt uses.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from ocrflux.page_parse import is_figure, page_pieces
from schemas.results import ErrorInfo

__all__ = [
    "DEFAULT_FIGURE_SCALE",
    "FIGURE_IGNORED",
    "FigureBox",
    "FiguresMode",
    "PageFigure",
    "crop_figure",
    "figure_markdown",
    "figure_name",
    "page_figures",
]

FiguresMode = Literal["none", "crop"]

#: How much larger than the model's page image a figure is cropped from.
DEFAULT_FIGURE_SCALE = 2.0

#: The warning code of a box that was ignored.
FIGURE_IGNORED = "figure_ignored"

#: Pixels a box may reach past the page edge and still count as inside (rounding in the answer).
_EDGE_SLACK = 2.0

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(rf"<Image>\s*\({_NUMBER},{_NUMBER}\)\s*,\s*\({_NUMBER},{_NUMBER}\)\s*</Image>")


@dataclass(frozen=True, slots=True)
class FigureBox:
    """A box in pixels of the model's page image."""

    left: float
    top: float
    right: float
    bottom: float

    def problem(self, width: int, height: int) -> str | None:
        """Why the box cannot be cropped from a `width` x `height` page, or None."""
        if self.right <= self.left or self.bottom <= self.top:
            return "is inverted or has no area"
        inside = (
            min(self.left, self.top) >= -_EDGE_SLACK
            and self.right <= width + _EDGE_SLACK
            and self.bottom <= height + _EDGE_SLACK
        )
        return None if inside else f"is not inside the {width}x{height} page"


@dataclass(frozen=True, slots=True)
class PageFigure:
    """One figure of a page: where it stood and its box."""

    page: int  # 0-based
    position: int  # the page's elements (figures not counted) before it
    box: FigureBox


def _parse_box(element: str) -> FigureBox | None:
    match = _BOX.fullmatch(element.strip())
    if match is None:
        return None
    left, top, right, bottom = (float(value) for value in match.groups())
    return FigureBox(left, top, right, bottom)


def page_figures(
    natural_text: str | None, page: int, width: int, height: int
) -> tuple[list[PageFigure], list[ErrorInfo]]:
    """The figures of one page answer, and a warning for each box that was ignored."""
    figures: list[PageFigure] = []
    warnings: list[ErrorInfo] = []
    position = 0
    for piece in page_pieces(natural_text):
        if not is_figure(piece):
            position += 1
            continue
        box = _parse_box(piece)
        problem = "has no readable coordinates" if box is None else box.problem(width, height)
        if box is None or problem is not None:
            warnings.append(
                ErrorInfo(
                    code=FIGURE_IGNORED,
                    message=f"page {page + 1}: figure box {piece[:80]!r} {problem}; ignored",
                )
            )
            continue
        figures.append(PageFigure(page=page, position=position, box=box))
    return figures, warnings


def crop_figure(page_png: bytes, box: FigureBox, model_size: tuple[int, int]) -> bytes:
    """The box cut out of `page_png` (the page rendered at any size) as PNG.

    `model_size` is the (width, height) of the page image the box refers to; the box is scaled
    by the ratio of the two images and widened to whole pixels, so the figure is never cut short.
    """
    model_width, model_height = model_size
    with Image.open(io.BytesIO(page_png)) as image:
        fx, fy = image.width / model_width, image.height / model_height
        region = (
            max(0, math.floor(box.left * fx)),
            max(0, math.floor(box.top * fy)),
            min(image.width, math.ceil(box.right * fx)),
            min(image.height, math.ceil(box.bottom * fy)),
        )
        buffer = io.BytesIO()
        image.crop(region).save(buffer, format="PNG")
    return buffer.getvalue()


def figure_name(number: int, page: int) -> str:
    """The file name of the document's `number`-th figure (1-based) on 0-based `page`."""
    return f"figure-{number:03d}-page-{page + 1}.png"


def figure_markdown(number: int, page: int, reference: str) -> str:
    """The Markdown that stands where the figure stood (`reference`: a path or a URL)."""
    return f"![Figure {number}, page {page + 1}](<{reference}>)"
