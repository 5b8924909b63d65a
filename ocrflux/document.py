"""From page results to the document result: merge scheduling and the final assembly.

Both drivers use these functions: the direct driver (`convert.py`) in memory, the stream
assembler with its state in a changelog-backed table. Detection for a page pair may start as
soon as both of its pages are in (**Ours**: pipelined merge).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ocrflux.engines.base import Engine, Pair
from ocrflux.errors import OcrfluxError
from ocrflux.figures import document_figures, figure_markdown
from ocrflux.merge import (
    Assembly,
    PlacedFigures,
    assemble_blocks,
    run_table_merges,
    table_merge_chains,
)
from ocrflux.plaintext import markdown_to_text
from schemas.options import ConversionOptions
from schemas.results import (
    DocumentResult,
    ErrorInfo,
    Figure,
    PageResult,
    PageSummary,
    TextBlock,
    TokenUsage,
)


def pairs_to_detect(done: Mapping[int, PageResult], page: int) -> list[int]:
    """Page pairs (by first page) that became ready for detection when `page` came in.

    A pair needs detection only when both pages succeeded and both have elements: a blank or
    failed page has nothing to merge.
    """
    ready = []
    for first in (page - 1, page):
        a, b = done.get(first), done.get(first + 1)
        if (
            a is not None
            and b is not None
            and a.succeeded
            and b.succeeded
            and a.elements
            and b.elements
        ):
            ready.append(first)
    return ready


async def detect(
    engine: Engine, done: Mapping[int, PageResult], first: int, max_attempts: int, usage: TokenUsage
) -> tuple[list[Pair], ErrorInfo | None]:
    """Merge detection for pages `first` and `first + 1`: the pairs, and why detection failed
    when it did (a failed task means no pairs; `detection_warning` tells the result)."""
    outcome = await engine.detect_merges(
        done[first].elements, done[first + 1].elements, max_attempts=max_attempts
    )
    usage.add(outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
    return outcome.value or [], outcome.error


#: The warning of a page pair whose merge detection failed: its elements stay apart.
MERGE_DETECTION_FAILED = "merge_detection_failed"


def detection_warning(first: int, error: ErrorInfo) -> ErrorInfo:
    return ErrorInfo(
        code=MERGE_DETECTION_FAILED,
        message=f"pages {first + 1} and {first + 2}: cross-page merge detection failed "
        f"({error.message}); nothing was merged across them",
    )


def page_elements(done: Mapping[int, PageResult], num_pages: int) -> list[list[str] | None]:
    return [done[p].elements if p in done else None for p in range(num_pages)]


async def merge_tables(
    engine: Engine,
    done: Mapping[int, PageResult],
    num_pages: int,
    pairs: Mapping[int, Sequence[Pair]],
    max_attempts: int,
    usage: TokenUsage,
) -> dict[tuple[int, int], str]:
    """Every detected table pair merged, chains in order (last page pair first)."""
    pages = page_elements(done, num_pages)

    async def merge(table1: str, table2: str) -> str | None:
        outcome = await engine.merge_tables(table1, table2, max_attempts=max_attempts)
        usage.add(outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
        return outcome.value

    return await run_table_merges(table_merge_chains(pages, pairs), pages, merge)


def document_status(pages: Iterable[PageResult]) -> tuple[str, ErrorInfo | None]:
    """`completed`, `partial` (some pages fell back) or `failed` (no page has any text)."""
    pages = list(pages)
    failed = [p for p in pages if p.fallback]
    if not failed:
        return "completed", None
    first = failed[0].error or ErrorInfo(code="task_failed", message="page not recognized")
    if len(failed) == len(pages) and all(p.source == "none" for p in failed):
        return "failed", ErrorInfo(
            code=first.code, message=f"no page could be recognized: {first.message}"
        )
    return "partial", ErrorInfo(
        code=first.code,
        message=f"{len(failed)} of {len(pages)} page(s) not recognized by the model (first: "
        f"page {failed[0].index}: {first.message})",
    )


def build_result(
    *,
    done: Mapping[int, PageResult],
    num_pages: int,
    pairs: Mapping[int, Sequence[Pair]],
    merged_tables: Mapping[tuple[int, int], str],
    options: ConversionOptions,
    usage: TokenUsage,
    doc_id: str = "",
    source: str | None = None,
    engine: str = "",
    model: str | None = None,
    timings: Mapping[str, float] | None = None,
    warnings: Sequence[ErrorInfo] = (),
) -> DocumentResult:
    """The document result from every processed page (OCRFlux's fields plus ours).

    With `figures=crop` the figures are listed and linked where they stood, not yet cropped:
    the driver crops them (`ocrflux.figures`)."""
    pages = page_elements(done, num_pages)
    figures: list[Figure] = []
    placed: PlacedFigures = {}
    if options.crop_figures:
        numbered = document_figures(done)
        figures = [figure for on_page in numbered.values() for _, figure in on_page]
        placed = {
            page: [(mark.position, fig.number, figure_markdown(fig)) for mark, fig in on_page]
            for page, on_page in numbered.items()
        }
        warnings = [*warnings, *(w for _, page in sorted(done.items()) for w in page.warnings)]
    merge_pairs = {} if options.skip_cross_page_merge else pairs
    assembly = assemble_blocks(pages, merge_pairs, merged_tables, placed)
    text = assembly.text
    status, error = document_status(done.values())
    total = TokenUsage()
    for page in done.values():
        total.add(page.usage.prompt_tokens, page.usage.completion_tokens)
    total.add(usage.prompt_tokens, usage.completion_tokens)
    return DocumentResult(
        doc_id=doc_id,
        status=status,  # type: ignore[arg-type]
        error=error,
        warnings=list(warnings),
        num_pages=num_pages,
        document_text=text,
        page_texts={str(p): r.text for p, r in sorted(done.items()) if r.source != "none"},
        fallback_pages=sorted(p for p, r in done.items() if r.fallback),
        page_sources={str(p): r.source for p, r in sorted(done.items())},
        output_format=options.output_format,
        content=_content(assembly, options),
        source=source,
        engine=engine,
        model=model,
        usage=total,
        timings=dict(timings or {}),
        pages=[_summary(page) for _, page in sorted(done.items())],
        merges=assembly.merges,
        blocks=_blocks(assembly),
        figures=figures,
    )


def _content(assembly: Assembly, options: ConversionOptions) -> str:
    """The Markdown, or for `text` the plain text of every block but the figures' links."""
    if options.output_format != "text":
        return assembly.text
    return markdown_to_text("\n\n".join(b.text for b in assembly.blocks if b.figure is None))


def _summary(page: PageResult) -> PageSummary:
    return PageSummary(
        index=page.index,
        source=page.source,
        fallback=page.fallback,
        attempts=page.attempts,
        latency_s=page.latency_s,
        usage=page.usage,
        error=page.error,
    )


def _blocks(assembly: Assembly) -> list[TextBlock]:
    """Each block's place in the assembled text (blocks are joined with a blank line)."""
    blocks, start = [], 0
    for block in assembly.blocks:
        end = start + len(block.text)
        blocks.append(TextBlock(start=start, end=end, pages=list(block.pages), figure=block.figure))
        start = end + 2
    return blocks


def failed_result(
    error: OcrfluxError,
    *,
    options: ConversionOptions,
    doc_id: str = "",
    source: str | None = None,
    engine: str = "",
    model: str | None = None,
    timings: Mapping[str, float] | None = None,
) -> DocumentResult:
    """The answer for a document that could not be converted at all (bad input, no backend)."""
    return DocumentResult(
        doc_id=doc_id,
        status="failed",
        error=ErrorInfo(code=error.code, message=error.message),
        output_format=options.output_format,
        source=source,
        engine=engine,
        model=model,
        timings=dict(timings or {}),
    )
