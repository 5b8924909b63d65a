"""Heading-aware chunks of a document's Markdown, for retrieval (`output_format=chunks`).

Chunks are cut from the assembled `document_text` along the result's blocks (its elements
after the cross-page merge, each with its pages), so a paragraph or table merged over two
pages is one block and lands in one chunk listing both pages. The rules:

- a heading (`# ...`) starts a new chunk and sets the heading path of the chunks under it;
- blocks are packed into a chunk while its estimated size stays within the budget;
- a table that fits the budget is never split; a larger one is cut between rows, a larger
  paragraph between sentences, then words, then characters.

Sizes are estimated without a tokenizer (`estimate_tokens`): BPE tokenizers average about four
characters of English per token and about one token per CJK character. Every chunk is a slice
of the document text and only whitespace lies between consecutive chunks, so the chunks cover
the text exactly once, in order.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from ocrflux.tables import is_table
from schemas.chunks import Chunk
from schemas.results import TextBlock

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_SENTENCE_GAP = re.compile(r"(?<=[.!?;:。！？；])\s+")
_WORD = re.compile(r"\S+")
_ROW_END = re.compile(r"</tr\s*>", re.IGNORECASE)


#: CJK ideographs and punctuation, kana, and Hangul: about one token each.
_CJK = re.compile("[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """One token per CJK character, one per four other characters (rounded up)."""
    return _Sizer(text)(0, len(text))


class _Sizer:
    """`estimate_tokens` of any slice of one text, from the positions of its CJK characters
    (memory grows with those only; most documents have none)."""

    def __init__(self, text: str) -> None:
        self._cjk = [match.start() for match in _CJK.finditer(text)]

    def __call__(self, start: int, end: int) -> int:
        cjk = bisect_left(self._cjk, end) - bisect_left(self._cjk, start)
        return cjk + -(-(end - start - cjk) // 4)


Span = tuple[int, int]
Atoms = Callable[[str, int, int], list[Span]]


def _gaps(pattern: re.Pattern[str]) -> Atoms:
    """The parts of a slice between the pattern's matches (the matches are left out)."""

    def atoms(text: str, start: int, end: int) -> list[Span]:
        spans, at = [], start
        for match in pattern.finditer(text, start, end):
            if match.start() > at:
                spans.append((at, match.start()))
            at = match.end()
        if at < end:
            spans.append((at, end))
        return spans

    return atoms


def _words(text: str, start: int, end: int) -> list[Span]:
    return [match.span() for match in _WORD.finditer(text, start, end)]


def _rows(text: str, start: int, end: int) -> list[Span]:
    """A table's slice cut after each row's end tag (nothing is left out)."""
    cuts = [match.end() for match in _ROW_END.finditer(text, start, end)]
    bounds = [start, *(cut for cut in cuts if start < cut < end), end]
    return list(pairwise(bounds))


_TEXT_LEVELS: tuple[Atoms, ...] = (_gaps(_SENTENCE_GAP), _words)
_TABLE_LEVELS: tuple[Atoms, ...] = (_rows, *_TEXT_LEVELS)


def _split(text: str, span: Span, budget: int, size: _Sizer, levels: Sequence[Atoms]) -> list[Span]:
    """A slice as pieces of at most `budget` tokens, cut at the coarsest level that works."""
    start, end = span
    if size(start, end) <= budget:
        return [span]
    if not levels:
        return _hard_split(span, budget, size)
    atoms = levels[0](text, start, end)
    if len(atoms) <= 1:
        return _split(text, span, budget, size, levels[1:])
    pieces: list[Span] = []
    current: Span | None = None
    for atom in atoms:
        if size(*atom) > budget:
            if current is not None:
                pieces.append(current)
                current = None
            pieces.extend(_split(text, atom, budget, size, levels[1:]))
        elif current is not None and size(current[0], atom[1]) <= budget:
            current = (current[0], atom[1])
        else:
            if current is not None:
                pieces.append(current)
            current = atom
    if current is not None:
        pieces.append(current)
    return pieces


def _hard_split(span: Span, budget: int, size: _Sizer) -> list[Span]:
    pieces, start = [], span[0]
    while start < span[1]:
        end = start + 1
        while end < span[1] and size(start, end + 1) <= budget:
            end += 1
        pieces.append((start, end))
        start = end
    return pieces


@dataclass
class _Open:
    start: int
    end: int
    pages: set[int] = field(default_factory=set)
    heading_path: list[str] = field(default_factory=list)


def default_blocks(document_text: str) -> list[TextBlock]:
    """Blocks for a result that has none (written before results carried them): the text's
    paragraphs, with no pages known."""
    return [
        TextBlock(start=start, end=end, pages=[])
        for start, end in _gaps(re.compile(r"\n\n+"))(document_text, 0, len(document_text))
    ]


def chunk_document(document_text: str, blocks: Sequence[TextBlock], max_tokens: int) -> list[Chunk]:
    """The chunks of `document_text`, each at most `max_tokens` estimated tokens."""
    size = _Sizer(document_text)
    chunks: list[Chunk] = []
    headings: list[tuple[int, str]] = []  # (level, title), outermost first
    current: _Open | None = None

    def close() -> None:
        nonlocal current
        if current is not None:
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=document_text[current.start : current.end],
                    start=current.start,
                    end=current.end,
                    pages=sorted(current.pages),
                    heading_path=current.heading_path,
                    tokens=size(current.start, current.end),
                )
            )
            current = None

    for block in blocks:
        text = document_text[block.start : block.end]
        heading = _HEADING.match(text) if "\n" not in text else None
        if heading is not None:
            close()
            level = len(heading.group(1))
            headings = [item for item in headings if item[0] < level] + [(level, heading[2])]
        levels = _TABLE_LEVELS if is_table(text.strip()) else _TEXT_LEVELS
        for start, end in _split(document_text, (block.start, block.end), max_tokens, size, levels):
            if current is not None and size(current.start, end) > max_tokens:
                close()
            if current is None:
                current = _Open(start, end, heading_path=[title for _, title in headings])
            current.end = end
            current.pages.update(block.pages)
    close()
    return chunks
