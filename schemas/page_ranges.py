"""Page selections: `1-3,7` or `[[1, 3], [7, 7]]`, parsed and normalised once for every surface
(CLI, Kafka records, HTTP API) and turned into the pages of a document.

Plain Python, without pydantic: the process that renders `ocrflux convert`'s pages while the
command loads (`ocrflux.head_start`) selects pages before pydantic is loaded, if ever.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "MAX_PAGE_RANGES",
    "PageRanges",
    "format_pages",
    "normalise_pages",
    "parse_pages",
    "selected_indices",
]

#: Ranges in one selection: `1,3,5,...` over a 2,000-page document is 1,000 ranges; more is
#: not a selection anyone types.
MAX_PAGE_RANGES = 1000

PageRanges = tuple[tuple[int, int], ...]
"""Selected pages as `(first, last)` ranges, 1-based and inclusive, sorted and disjoint."""


def parse_pages(text: str) -> PageRanges:
    """`"1-3,7"` -> `((1, 3), (7, 7))`; raises ValueError naming what is wrong."""
    ranges = []
    for part in text.split(","):
        item = part.strip()
        first, dash, last = item.partition("-")
        try:
            ranges.append((int(first), int(last) if dash else int(first)))
        except ValueError:
            raise ValueError(
                f"pages must look like 1-3,7 (1-based, inclusive), not {text[:60]!r}"
            ) from None
    return normalise_pages(ranges)


def normalise_pages(ranges: Sequence[Sequence[int]]) -> PageRanges:
    """Sorted, with overlapping and adjacent ranges joined; raises ValueError for a bad one."""
    if not ranges:
        raise ValueError("pages must select at least one page")
    if len(ranges) > MAX_PAGE_RANGES:
        raise ValueError(f"pages has {len(ranges)} ranges; at most {MAX_PAGE_RANGES}")
    joined: list[tuple[int, int]] = []
    for pair in ranges:
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(type(number) is int for number in pair)
        ):
            raise ValueError(f"a page range is [first, last] (whole numbers), not {pair!r}")
        first, last = pair
        if first < 1 or last < first:
            raise ValueError(f"page range {first}-{last}: expected 1 <= first <= last")
        joined.append((first, last))
    joined.sort()
    merged = [joined[0]]
    for first, last in joined[1:]:
        previous_first, previous_last = merged[-1]
        if first <= previous_last + 1:
            merged[-1] = (previous_first, max(previous_last, last))
        else:
            merged.append((first, last))
    return tuple(merged)


def format_pages(ranges: PageRanges) -> str:
    """`((1, 3), (7, 7))` -> `"1-3,7"`."""
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def selected_indices(ranges: PageRanges | None, page_count: int) -> list[int]:
    """The 0-based indices a selection picks in a document of `page_count` pages, in order.

    A range reaching past the end is clipped to the last page; one that starts past the end
    raises ValueError (the caller asked for a page that does not exist).
    """
    if ranges is None:
        return list(range(page_count))
    indices: list[int] = []
    for first, last in ranges:
        if first > page_count:
            raise ValueError(
                f"page range {format_pages(((first, last),))} starts after the last page "
                f"({page_count})"
            )
        indices.extend(range(first - 1, min(last, page_count)))
    return indices
