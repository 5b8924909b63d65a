"""Cross-page merge: parsing the model's answers, ordering table merges, and assembly.

Everything here is pure except `run_table_merges`, which only awaits the merge callable it is
given. Model output is parsed with `ast.literal_eval` and regular expressions, never `eval`.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from ocrflux.page_parse import AnswerRejected
from ocrflux.tables import (
    append_rows,
    column_count,
    header_row_count,
    is_table,
    matrix_to_html,
    row_texts,
    rows,
)
from schemas.results import MergeApplied

Pages = Sequence[Sequence[str] | None]
"""Element lists by page index; None for a page with no elements at all."""
PairsByPage = Mapping[int, Sequence[tuple[int, int]]]
"""Detected pairs by page pair: key p holds (i, j) = element i of page p, element j of p + 1."""
MergeTables = Callable[[str, str], Awaitable[str | None]]
"""Merges two HTML tables into one; None when the merge failed."""

# A pair list is a few dozen characters; a runaway generation is not worth parsing.
MAX_PAIRS_ANSWER_CHARS = 10_000


def parse_merge_pairs(content: str, n_previous: int, n_next: int) -> list[tuple[int, int]]:
    """Parse a merge-detection answer such as `[(0, 1), (3, 0)]` or `[]`.

    Inner pairs may be tuples or lists. An answer that is not a list of integer pairs raises
    `AnswerRejected("not_pairs")`. **Ours**: pairs whose indices are out of range are dropped,
    and so are repeated pairs; the model's order is kept.
    """
    text = content.strip()
    if len(text) > MAX_PAIRS_ANSWER_CHARS:
        raise AnswerRejected("not_pairs", f"answer of {len(text)} characters")
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise AnswerRejected("not_pairs", "not a Python literal") from exc
    if not isinstance(value, list):
        raise AnswerRejected("not_pairs", f"a {type(value).__name__}, not a list")
    pairs: list[tuple[int, int]] = []
    for item in value:
        # `type(x) is int` rather than isinstance: True/False are not indices.
        if not (
            isinstance(item, tuple | list)
            and len(item) == 2
            and all(type(index) is int for index in item)
        ):
            raise AnswerRejected("not_pairs", f"item {item!r}")
        pair = (item[0], item[1])
        if 0 <= pair[0] < n_previous and 0 <= pair[1] < n_next and pair not in pairs:
            pairs.append(pair)
    return pairs


def is_merged_table_answer(content: str) -> bool:
    """Whether a table-merge answer is acceptable: one table, surrounding whitespace aside."""
    return is_table(content.strip())


def accept_merged_table(content: str) -> str | None:
    """The normalised merged table (stripped, any matrix markers converted), or None."""
    text = content.strip()
    return matrix_to_html(text) if is_table(text) else None


def merge_tables_without_model(table1: str, table2: str) -> str | None:
    """Append the rows of `table2` to `table1` when both have the same number of columns.

    The header of `table2` (its first row, plus any rows that row spans into) is dropped when
    its cell texts equal those of `table1`'s header. None when the column counts differ or
    either table cannot be parsed.
    """
    width = column_count(table1)
    if width is None or width != column_count(table2):
        return None
    new_rows = rows(table2)
    header = header_row_count(table1)
    if (
        header == header_row_count(table2)
        and row_texts(table1)[:header] == row_texts(table2)[:header]
    ):
        new_rows = new_rows[header:]
    return append_rows(table1, new_rows)


@dataclass(frozen=True, slots=True, order=True)
class TablePair:
    """Table `i` of page `page` continues as table `j` of page `page + 1`."""

    page: int
    i: int
    j: int

    @property
    def first(self) -> tuple[int, int]:
        return (self.page, self.i)

    @property
    def second(self) -> tuple[int, int]:
        return (self.page + 1, self.j)


def _element(pages: Pages, page: int, index: int) -> str | None:
    if not 0 <= page < len(pages):
        return None
    elements = pages[page]
    if elements is None or not 0 <= index < len(elements):
        return None
    return elements[index]


def table_pairs(pages: Pages, pairs: PairsByPage) -> list[TablePair]:
    """The detected pairs to merge as tables, from the last page pair to the first.

    A pair is a table pair when both elements are tables. Within a page pair, a table that
    already appears in an earlier table pair (in the model's order) is not merged again: the
    later pair is left as two elements, so that every table merge has one clear input.
    """
    found: list[TablePair] = []
    for page in sorted(pairs, reverse=True):
        used_i: set[int] = set()
        used_j: set[int] = set()
        for i, j in pairs[page]:
            first, second = _element(pages, page, i), _element(pages, page + 1, j)
            if first is None or second is None or not (is_table(first) and is_table(second)):
                continue
            if i in used_i or j in used_j:
                continue
            used_i.add(i)
            used_j.add(j)
            found.append(TablePair(page, i, j))
    return found


def table_merge_chains(pages: Pages, pairs: PairsByPage) -> list[list[TablePair]]:
    """Group the table pairs into chains, each ordered from its last page pair to its first.

    A table over pages 4, 5 and 6 gives one chain `[TablePair(5, j, k), TablePair(4, i, j)]`:
    (5, 6) is merged first and its result stands in for table j of page 5 when (4, 5) is
    merged. Separate chains are independent and may run concurrently.
    """
    found = table_pairs(pages, pairs)
    by_first = {pair.first: pair for pair in found}
    by_second = {pair.second: pair for pair in found}
    chains: list[list[TablePair]] = []
    for pair in found:
        if pair.second in by_first:
            continue  # not the last link of its chain
        chain = [pair]
        while (upstream := by_second.get(chain[-1].first)) is not None:
            chain.append(upstream)
        chains.append(chain)
    return chains


def ready_table_merges(
    chains: Sequence[Sequence[TablePair]],
    pages: Pages,
    outcomes: Mapping[tuple[int, int], str | None],
) -> list[tuple[TablePair, str, str]]:
    """The table merges that can run now, with their two input tables.

    `outcomes` holds the finished links by first element, `(page, i)`: the merged HTML, or
    None when the merge failed. A link is ready when every link after it in its chain (further
    down the document) has finished; its second table is the downstream merge result when that
    succeeded, else the original table. Both drivers schedule table merges with this.
    """
    ready = []
    for chain in chains:
        for pair in chain:  # last page pair first
            if pair.first in outcomes:
                continue
            first = _element(pages, *pair.first)
            second = outcomes.get(pair.second) or _element(pages, *pair.second)
            if first is not None and second is not None:
                ready.append((pair, first, second))
            break
    return ready


def table_merges_done(
    chains: Sequence[Sequence[TablePair]], outcomes: Mapping[tuple[int, int], str | None]
) -> bool:
    return all(pair.first in outcomes for chain in chains for pair in chain)


async def run_table_merges(
    chains: Sequence[Sequence[TablePair]], pages: Pages, merge: MergeTables
) -> dict[tuple[int, int], str]:
    """Run `merge` over every chain: chains concurrently, the links of a chain in order.

    Returns the successful merges keyed by the first element, `(page, i)`; each result
    already contains everything merged further down its chain. A failed link (None or "") leaves
    the next link to merge with the original table.
    """
    outcomes: dict[tuple[int, int], str | None] = {}

    async def run(pair: TablePair, table1: str, table2: str) -> None:
        # an empty answer is a failed merge, not an empty table
        outcomes[pair.first] = await merge(table1, table2) or None

    while ready := ready_table_merges(chains, pages, outcomes):
        try:
            async with asyncio.TaskGroup() as group:
                for pair, table1, table2 in ready:
                    group.create_task(run(pair, table1, table2))
        except* Exception as errors:  # the first error (the model unreachable) is the answer
            raise errors.exceptions[0] from None
    return {key: html for key, html in outcomes.items() if html}


def _joiner(tail: str) -> str:
    """No space after an empty element, a hyphen (kept) or a CJK ideograph; else one space."""
    if not tail or tail.endswith("-") or "\u4e00" <= tail[-1] <= "\u9fff":
        return ""
    return " "


@dataclass(frozen=True, slots=True)
class Block:
    """One element of the assembled document, and the 0-based pages its text came from."""

    text: str
    pages: tuple[int, ...]
    figure: int | None = None  # the figure's number when the block is a figure's link


PlacedFigures = Mapping[int, Sequence[tuple[int, int, str]]]
"""Figures by page index: (position among the page's elements, number, Markdown)."""


@dataclass(frozen=True, slots=True)
class Assembly:
    blocks: list[Block]
    merges: list[MergeApplied]

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks)


def assemble(pages: Pages, pairs: PairsByPage, merged_tables: Mapping[tuple[int, int], str]) -> str:
    """The document text (see `assemble_blocks`)."""
    return assemble_blocks(pages, pairs, merged_tables).text


def assemble_blocks(
    pages: Pages,
    pairs: PairsByPage,
    merged_tables: Mapping[tuple[int, int], str],
    figures: PlacedFigures | None = None,
) -> Assembly:
    """Build the document from the page elements (spec section 6); inputs are not changed.

    1. Each successful table merge replaces its first table; its second table is emptied.
    2. Text pairs (any pair that is not two tables), page pairs last to first, the model's
       order within one: the second element is appended to the first (see `_joiner`) and
       emptied. **Ours**: a table pair whose merge failed stays two elements, no space is
       added after a merged table, and a pair whose second element is already empty is a
       no-op. Pairs that do not address existing elements are ignored.
    3. Every non-empty element, in page order; the text joins them with blank lines. Each of
       `figures` stands before the element its position names (after the page's last element
       when the position is past it), also when that element was merged into another page's.

    Each block keeps the pages its text came from (a paragraph merged over pages 1 and 2 has
    both), and every detected pair is reported with whether it was applied. Pairs only ever
    join page p with page p + 1, so pages that are not both selected never merge. With no
    pairs this is the `skip_cross_page_merge` text.
    """
    work = [list(elements) if elements is not None else [] for elements in pages]
    owners = [[{page} for _ in elements] for page, elements in enumerate(work)]
    applied: dict[tuple[int, int, int], MergeApplied] = {}
    for pair in table_pairs(pages, pairs):
        merged = merged_tables.get(pair.first)
        if merged is not None:
            work[pair.page][pair.i] = merged
            work[pair.page + 1][pair.j] = ""
            owners[pair.page][pair.i] |= owners[pair.page + 1][pair.j]
        applied[(pair.page, pair.i, pair.j)] = MergeApplied(
            page=pair.page, i=pair.i, j=pair.j, kind="table", applied=merged is not None
        )
    for page in sorted(pairs, reverse=True):
        for i, j in pairs[page]:
            first, second = _element(pages, page, i), _element(pages, page + 1, j)
            if first is None or second is None:
                continue
            if is_table(first) and is_table(second):
                failed = MergeApplied(page=page, i=i, j=j, kind="table", applied=False)
                applied.setdefault((page, i, j), failed)
                continue
            tail, head = work[page][i], work[page + 1][j]
            if head:
                work[page][i] = tail + _joiner(tail) + head
                work[page + 1][j] = ""
                owners[page][i] |= owners[page + 1][j]
            applied[(page, i, j)] = MergeApplied(
                page=page, i=i, j=j, kind="text", applied=bool(head)
            )
    placed = figures or {}
    blocks: list[Block] = []
    for page, elements in enumerate(work):
        on_page = placed.get(page, ())
        for index, element in enumerate(elements):
            blocks.extend(Block(md, (page,), number) for at, number, md in on_page if at == index)
            if element:
                blocks.append(Block(element, tuple(sorted(owners[page][index]))))
        last = len(elements)
        blocks.extend(Block(md, (page,), number) for at, number, md in on_page if at >= last)
    return Assembly(blocks, sorted(applied.values(), key=lambda m: (m.page, m.i, m.j)))
