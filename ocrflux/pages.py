"""The rendering contract without the renderer: what rendering hands out, how it is asked for.

`RenderedPage` (one page ready for the model), `OpenedDocument` (what the direct driver uses of
an opened document), `OpenOptions` (how a document is checked and rendered, from the engine that
reads its pages: `open_options`, `text_layer_tables`, `defer_text_layer`), `PoolRule` (which
documents render in the render pool's processes) and `page_indices` (the pages a `--pages`
selection names). Processes that never render a page themselves use these: an
`ocrflux convert` whose pages come from its head start (`ocrflux.head_start`), the recognize
and assemble roles. Importing `ocrflux.render` loads PyMuPDF and Pillow (about 0.1 s); this
module loads neither (`OpenOptions.open` loads the renderer when it opens a document).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from ocrflux.errors import InputError
from ocrflux.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PAGES
from ocrflux.sniff import DocumentKind
from schemas.page_ranges import PageRanges, normalise_pages, selected_indices

if TYPE_CHECKING:
    from PIL import Image

    from ocrflux.render import Document
    from schemas.results import ErrorInfo

__all__ = [
    "OpenOptions",
    "OpenedDocument",
    "PoolRule",
    "RenderedPage",
    "TableMode",
    "defer_text_layer",
    "open_options",
    "page_indices",
    "text_layer_tables",
]

#: How hard a PDF page's text layer looks for tables (`ocrflux.textlayer`): "ruled" only where
#: ruling lines could form one, "always", or "never".
TableMode = Literal["ruled", "always", "never"]


@dataclass(frozen=True, slots=True)
class RenderedPage:
    """One page ready for the model: a PNG whose longest side is 1024 px
    (`ocrflux.render.TARGET_LONGEST_SIDE`)."""

    index: int  # 0-based position in the document, also when a page range was asked for
    png: bytes = field(repr=False)
    width: int
    height: int
    text_layer: str | None  # the PDF's own text, stripped; None when empty and for images
    # True: the text layer was not taken while rendering (`Document.text_layer` takes it), so
    # `text_layer` is None without saying the page has none.
    text_layer_deferred: bool = False


def page_indices(pages: PageRanges | None, page_count: int) -> list[int]:
    """The 0-based indices `pages` selects from a document of `page_count` pages, in order.

    `pages` are `(first, last)` ranges, 1-based and inclusive (`schemas.options`; None: every
    page). A range reaching past the end is clipped to the last page; one that starts past the
    end, or is malformed, raises `InputError`."""
    try:
        return selected_indices(None if pages is None else normalise_pages(pages), page_count)
    except ValueError as exc:
        raise InputError(str(exc)) from None


class OpenedDocument(Protocol):
    """What the direct driver uses of an opened document: `ocrflux.render.Document`, or one
    whose pages come from a head start (`ocrflux.head_start.HeadStartDocument`)."""

    kind: DocumentKind
    page_count: int
    text_layer_tables: TableMode
    defer_text_layer: bool

    @property
    def warnings(self) -> list[ErrorInfo]: ...

    def page_indices(self, pages: PageRanges | None = None) -> list[int]: ...

    def render_page(self, index: int) -> RenderedPage: ...

    def text_layer(self, index: int) -> str | None: ...

    def render_image(self, index: int, scale: float) -> Image.Image: ...

    def close(self) -> None: ...


def _reads_text_layers(engine: str | None, vllm_configured: bool) -> bool:
    """The `local` engine reads every page from its text layer; for `vllm` the text layer is
    only the fallback of a page the model fails."""
    return engine == "local" or (engine in (None, "auto") and not vllm_configured)


def text_layer_tables(engine: str | None, vllm_configured: bool) -> TableMode:
    """How hard rendering should look for tables in text layers, for the engine that will read
    the pages: the `local` engine reads tables from them; for `vllm` the text layer is only the
    fallback of a failed page, not worth the table finder's cost on every page."""
    return "ruled" if _reads_text_layers(engine, vllm_configured) else "never"


def defer_text_layer(engine: str | None, vllm_configured: bool) -> bool:
    """Whether rendering should leave the text layers for later (`open_document`'s
    `defer_text_layer`): for `vllm`, whose drivers take a page's text layer only when the model
    fails the page, instead of every page paying 5-6 ms of CPU while it renders."""
    return not _reads_text_layers(engine, vllm_configured)


@dataclass(frozen=True)
class PoolRule:
    """Which documents a render pool of `processes` processes renders in them (else they render
    in place): PDFs of `min_pages` pages or more (`ocrflux.render_pool.RenderPool.rule`; a
    plain value, it crosses to a head start's process, `ocrflux.head_start`)."""

    processes: int
    min_pages: int

    def __call__(self, kind: DocumentKind, pages: int) -> bool:
        return self.processes > 0 and kind is DocumentKind.PDF and pages >= self.min_pages


@dataclass(frozen=True)
class OpenOptions:
    """`open_document`'s keyword arguments: how the document is checked and rendered."""

    max_bytes: int
    max_pages: int
    text_layer_tables: TableMode
    defer_text_layer: bool

    def open(self, data: bytes) -> Document:
        from ocrflux.render import open_document

        return open_document(
            data,
            max_bytes=self.max_bytes,
            max_pages=self.max_pages,
            text_layer_tables=self.text_layer_tables,
            defer_text_layer=self.defer_text_layer,
        )


def open_options(
    engine: str,
    *,
    vllm_configured: bool = False,
    max_bytes: int | None = None,
    max_pages: int | None = None,
) -> OpenOptions:
    """How the direct driver opens a document for `engine` (`auto`: as for vLLM when
    `vllm_configured`, else as for the local engine; limits: the defaults when None)."""
    return OpenOptions(
        max_bytes=max_bytes or DEFAULT_MAX_BYTES,
        max_pages=max_pages or DEFAULT_MAX_PAGES,
        text_layer_tables=text_layer_tables(engine, vllm_configured=vllm_configured),
        defer_text_layer=defer_text_layer(engine, vllm_configured=vllm_configured),
    )
