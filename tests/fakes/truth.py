"""What the OCRFlux-3B test double "sees": its own copy of the three prompts, task recognition,
and the registry of true answers (pages by pixel identity, merge pairs, table merges).

The prompts are written out here on purpose instead of importing `ocrflux.prompts`: a wrong
prompt in production must be caught by the double, not echoed by it. A test asserts the two
copies agree.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

Task = Literal["page", "detect", "table_merge", "other"]
TASKS: tuple[Task, ...] = ("page", "detect", "table_merge", "other")

PAGE_PROMPT = (
    "Below is the image of one page of a document. Just return the plain text representation of "
    "this document as if you were reading it naturally.\nALL tables should be presented in HTML "
    'format.\nIf there are images or figures in the page, present them as "<Image>(left,top),'
    '(right,bottom)</Image>", (left,top,right,bottom) are the coordinates of the top-left and '
    "bottom-right corners of the image or figure.\nPresent all titles and headings as H1 "
    "headings.\nDo not hallucinate.\n"
)
DETECT_HEADER = (
    "Below are two consecutive pages in Markdown format, where each element of them is numbered. "
    "Identify pairs of elements which should be merged across the two pages, such as text "
    "paragraphs or tables that span across the two pages. Return pairs as [(element_index_of_page1"
    ", element_index_of_page2), ...] or [] if no elements should be merged.\n"
)
DETECT_PREVIOUS = "Previous page:\n"
DETECT_NEXT = "Next page:\n"
TABLE_MERGE_HEAD = (
    "Below are two tables in HTML format, merge them into one table in HTML format.\nTABLE 1:\n"
)
TABLE_MERGE_MIDDLE = "\nTABLE 2:\n"

GENERIC_ANSWER = (
    "I can read document pages and return their text. Please send a page image with the page "
    "prompt, two numbered pages for merge detection, or two HTML tables to merge."
)
PAGE_KEYS = (
    "primary_language",
    "is_rotation_valid",
    "rotation_correction",
    "is_table",
    "is_diagram",
    "natural_text",
)
_ROW = re.compile(r"<tr\b.*?</tr>", re.DOTALL | re.IGNORECASE)
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Prompt:
    """A recognised prompt: its task and, for tasks B and C, what was parsed back out of it."""

    task: Task
    previous: tuple[str, ...] = ()
    following: tuple[str, ...] = ()
    table1: str = ""
    table2: str = ""


def recognise(text: str) -> Prompt:
    """Classify a prompt the way the model would; anything malformed is task "other"."""
    if text == PAGE_PROMPT:
        return Prompt("page")
    if text.startswith(DETECT_HEADER + DETECT_PREVIOUS):
        lists = _parse_numbered(text[len(DETECT_HEADER) + len(DETECT_PREVIOUS) :])
        if lists is not None:
            return Prompt("detect", previous=lists[0], following=lists[1])
    if text.startswith(TABLE_MERGE_HEAD) and text.endswith("\n"):
        table1, middle, table2 = text[len(TABLE_MERGE_HEAD) : -1].partition(TABLE_MERGE_MIDDLE)
        if middle:
            return Prompt("table_merge", table1=table1, table2=table2)
    return Prompt("other")


def _parse_numbered(body: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """Parse `0. a\\n\\n1. b\\n\\nNext page:\\n0. c\\n\\n` back into (("a", "b"), ("c",))."""
    sections: list[list[str]] = [[], []]
    position = 0
    for section, terminator in enumerate((DETECT_NEXT, None)):
        items = sections[section]
        while True:
            if terminator is not None and body.startswith(terminator, position):
                position += len(terminator)
                break
            if terminator is None and position == len(body):
                break
            label = f"{len(items)}. "
            if not body.startswith(label, position):
                return None
            start = position + len(label)
            end = _element_end(body, start, len(items) + 1, terminator)
            if end < 0:
                return None
            items.append(body[start:end])
            position = end + 2
    return tuple(sections[0]), tuple(sections[1])


def _element_end(body: str, start: int, next_index: int, terminator: str | None) -> int:
    """The index of the `\\n\\n` that ends an element: the first one followed by what may come."""
    search = start
    while (end := body.find("\n\n", search)) >= 0:
        after = end + 2
        if body.startswith(f"{next_index}. ", after):
            return end
        if terminator is not None and body.startswith(terminator, after):
            return end
        if terminator is None and after == len(body):
            return end
        search = end + 1
    return -1


def text_key(texts: Sequence[str]) -> str:
    """A short identity of some prompt inputs (element lists, tables) for the request log."""
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()[:16]


def subject(prompt: Prompt) -> str | None:
    """What a text task is about, as `text_key(input 1)/text_key(input 2)`: a detection's two
    element lists, a table merge's two tables (benchmarks map the calls back to page pairs)."""
    if prompt.task == "detect":
        return f"{text_key(prompt.previous)}/{text_key(prompt.following)}"
    if prompt.task == "table_merge":
        return f"{text_key([prompt.table1])}/{text_key([prompt.table2])}"
    return None


def image_key(image: bytes) -> str:
    """The identity of a page image: sha256 over its size and RGB pixels, not its encoding."""
    with Image.open(io.BytesIO(image)) as opened:
        return pixel_key(opened)


def pixel_key(image: Image.Image) -> str:
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}\0".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def as_key(page: bytes | str) -> str:
    """A page given as image bytes or as an already computed key."""
    if isinstance(page, str):
        if not _HEX_KEY.fullmatch(page):
            raise ValueError("a page key is 64 lowercase hex digits (see image_key)")
        return page
    return image_key(page)


def page_answer(
    natural_text: str | None,
    *,
    primary_language: str | None = "en",
    is_rotation_valid: bool = True,
    rotation_correction: int = 0,
    is_table: bool = False,
    is_diagram: bool = False,
) -> str:
    """The page JSON exactly as the model writes it (key order of the protocol, section 5)."""
    return json.dumps(
        {
            "primary_language": primary_language,
            "is_rotation_valid": is_rotation_valid,
            "rotation_correction": rotation_correction,
            "is_table": is_table,
            "is_diagram": is_diagram,
            "natural_text": natural_text,
        },
        ensure_ascii=False,
    )


def format_pairs(pairs: Sequence[Sequence[int]]) -> str:
    """`[(0, 1), (2, 0)]` or `[]`, the Python-literal text the model answers with."""
    return "[" + ", ".join(f"({int(i)}, {int(j)})" for i, j in pairs) + "]"


def default_table_merge(table1: str, table2: str) -> str:
    """Append table 2's rows to table 1, dropping a first row that repeats table 1's first row."""
    rows2 = _ROW.findall(table2)
    rows1 = _ROW.findall(table1)
    if rows2 and rows1 and _squash(rows2[0]) == _squash(rows1[0]):
        rows2 = rows2[1:]
    end = table1.lower().rfind("</table>")
    if end < 0:
        return table1 + "".join(rows2)
    return table1[:end] + "".join(rows2) + table1[end:]


def _squash(html: str) -> str:
    return re.sub(r"\s+", "", html)


class TruthRegistry:
    """The answers the double gives; anything not registered gets a deterministic default."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.merges: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        self.table_merges: dict[tuple[str, str], str] = {}

    def clear(self) -> None:
        self.pages.clear()
        self.merges.clear()
        self.table_merges.clear()

    def add_page(self, page: bytes | str, content: str) -> str:
        key = as_key(page)
        self.pages[key] = content
        return key

    def add_merges(
        self,
        previous: Sequence[str],
        following: Sequence[str],
        pairs: Sequence[Sequence[int]] | str,
    ) -> None:
        answer = pairs if isinstance(pairs, str) else format_pairs(pairs)
        self.merges[(tuple(previous), tuple(following))] = answer

    def add_table_merge(self, table1: str, table2: str, merged: str) -> None:
        self.table_merges[(table1, table2)] = merged

    def answer(self, prompt: Prompt, key: str) -> str:
        """The model's content for a recognised prompt about the image with `key`."""
        if prompt.task == "page":
            default = page_answer(f"Unregistered page {key[:12]}")
            return self.pages.get(key, default)
        if prompt.task == "detect":
            return self.merges.get((prompt.previous, prompt.following), "[]")
        if prompt.task == "table_merge":
            merged = self.table_merges.get((prompt.table1, prompt.table2))
            return (
                merged if merged is not None else default_table_merge(prompt.table1, prompt.table2)
            )
        return GENERIC_ANSWER

    def counts(self) -> dict[str, Any]:
        return {
            "pages": len(self.pages),
            "merges": len(self.merges),
            "table_merges": len(self.table_merges),
        }
