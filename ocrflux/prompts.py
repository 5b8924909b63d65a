"""The three OCRFlux-3B prompts, byte for byte as the model was trained on them.

Do not reword, reflow or strip these strings: the model's accuracy depends on the exact text.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import cache

from ocrflux.png import RGB, png_file

PAGE_PROMPT = (
    "Below is the image of one page of a document. Just return the plain text representation "
    "of this document as if you were reading it naturally.\n"
    "ALL tables should be presented in HTML format.\n"
    'If there are images or figures in the page, present them as "<Image>(left,top),(right,bottom)'
    '</Image>", (left,top,right,bottom) are the coordinates of the top-left and bottom-right '
    "corners of the image or figure.\n"
    "Present all titles and headings as H1 headings.\n"
    "Do not hallucinate.\n"
)

MERGE_DETECTION_HEADER = (
    "Below are two consecutive pages in Markdown format, where each element of them is numbered. "
    "Identify pairs of elements which should be merged across the two pages, such as text "
    "paragraphs or tables that span across the two pages. Return pairs as "
    "[(element_index_of_page1, element_index_of_page2), ...] or [] if no elements should be "
    "merged.\n"
)

TABLE_MERGE_TEMPLATE = (
    "Below are two tables in HTML format, merge them into one table in HTML format.\n"
    "TABLE 1:\n{table1}\nTABLE 2:\n{table2}\n"
)


def page_prompt() -> str:
    """Prompt A: one page image to the page JSON."""
    return PAGE_PROMPT


def merge_detection_prompt(previous: Sequence[str], following: Sequence[str]) -> str:
    """Prompt B: the numbered elements of two consecutive pages."""
    parts = [MERGE_DETECTION_HEADER, "Previous page:\n"]
    parts.extend(f"{i}. {text}\n\n" for i, text in enumerate(previous))
    parts.append("Next page:\n")
    parts.extend(f"{i}. {text}\n\n" for i, text in enumerate(following))
    return "".join(parts)


def table_merge_prompt(table1: str, table2: str) -> str:
    """Prompt C: two HTML tables to one."""
    return TABLE_MERGE_TEMPLATE.format(table1=table1, table2=table2)


@cache
def blank_image_png() -> bytes:
    """The 28x28 all-black RGB PNG sent with the text-only tasks B and C.

    The model saw an image in every training sample, so text-only tasks still attach one.
    Written without Pillow: the driver's first detection must not wait for Pillow to load.
    """
    side = 28
    scanlines = (b"\x00" + bytes(side * 3)) * side  # filter byte 0 (none), then black pixels
    return png_file(side, side, RGB, zlib.compress(scanlines))
