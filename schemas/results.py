"""Results of recognition: one page, and one whole document (OCRFlux's field names kept)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

from schemas.options import OutputFormat

PageSource = Literal["model", "text_layer", "ocr", "none"]
#: `cancelled`: stopped at the caller's request (`ocrflux cancel`, `DELETE /v1/jobs/{id}`).
DocumentStatus = Literal["completed", "partial", "failed", "cancelled"]


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens


class FigureBox(BaseModel):
    """Where a figure is on its page, as fractions (0 to 1) of the page's width and height: the
    model's box in pixels of the page image it saw, divided by that image's size, so the figure
    can be cut from the page rendered at any size."""

    model_config = ConfigDict(frozen=True)

    left: float = Field(ge=0, le=1)
    top: float = Field(ge=0, le=1)
    right: float = Field(ge=0, le=1)
    bottom: float = Field(ge=0, le=1)


class PageFigure(BaseModel):
    """A figure the model marked on a page (`<Image>(left,top),(right,bottom)</Image>`)."""

    model_config = ConfigDict(frozen=True)

    position: int = Field(
        ge=0, description="The page's elements (figures not counted) that stand before it"
    )
    box: FigureBox


class PageResult(BaseModel):
    """One recognized page, before any cross-page merge."""

    index: int = Field(ge=0, description="0-based page index within the document")
    elements: list[str] = Field(default_factory=list)
    source: PageSource = "model"
    fallback: bool = Field(
        default=False, description="True when the model failed every attempt on this page"
    )
    attempts: int = 0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    latency_s: float = 0.0
    error: ErrorInfo | None = None
    figures: list[PageFigure] = Field(
        default_factory=list, description="Figures the model marked, in reading order"
    )
    warnings: list[ErrorInfo] = Field(
        default_factory=list, description="Problems with the page that did not stop it"
    )

    @property
    def text(self) -> str:
        return "\n\n".join(self.elements)

    @property
    def succeeded(self) -> bool:
        """Whether the page takes part in cross-page merge detection."""
        return not self.fallback


class PageSummary(BaseModel):
    """What became of one converted page: where its text came from, what it cost, and why it
    is a fallback page when it is one."""

    index: int = Field(ge=0, description="0-based page index within the document")
    source: PageSource
    fallback: bool = False
    attempts: int = Field(default=0, description="Model attempts spent on the page")
    latency_s: float = Field(default=0.0, description="Time recognizing it, attempts included")
    usage: TokenUsage = Field(default_factory=TokenUsage)
    error: ErrorInfo | None = Field(
        default=None, description="Why the model's answer was not used (fallback pages)"
    )


class MergeApplied(BaseModel):
    """A detected cross-page pair: element `i` of page `page` continues as element `j` of page
    `page + 1` (0-based), and whether assembly joined them (a failed table merge leaves two
    tables; a text pair whose second element was already joined elsewhere is not applied)."""

    page: int = Field(ge=0)
    i: int = Field(ge=0)
    j: int = Field(ge=0)
    kind: Literal["text", "table"]
    applied: bool


# A slotted dataclass, not a model: a 1,000-page result has about 30,000 blocks, which took
# 19 MB as models and take 7 MB so (same validation, JSON and schema).
@dataclass(slots=True)
class TextBlock:
    """One element of `document_text` after the cross-page merge: `document_text[start:end]`
    (offsets in Unicode code points), and the 0-based pages its text came from."""

    start: Annotated[int, Field(ge=0)]
    end: Annotated[int, Field(ge=0)]
    pages: list[int]
    figure: int | None = Field(
        default=None, description="The figure's number when the block is a figure's link"
    )


class Figure(BaseModel):
    """A figure of the document (option `figures=crop`): its box cropped from the page
    rendered larger than the model saw it, as PNG. The Markdown links it where it stood as
    `![Figure N, page P](<link>)`; the link is `name` unless the result was written somewhere
    that keeps its figures in a folder (`<stem>_figures/<name>` beside `<stem>.md`)."""

    number: int = Field(ge=1, description="1-based, in reading order over the document")
    page: int = Field(ge=0, description="0-based page index")
    name: str = Field(description="File name, e.g. figure-001-page-3.png")
    box: FigureBox
    width: int = Field(default=0, ge=0, description="Pixels of the crop (0: not cropped)")
    height: int = Field(default=0, ge=0)
    ref: str | None = Field(
        default=None,
        description="Where the PNG is stored: a blob-store URL (stream processor) or a path "
        "relative to the written result",
    )
    data: str | None = Field(default=None, description="The PNG, base64, when carried inline")


class DocumentResult(BaseModel):
    """The result of converting one document.

    Versioning: `schema_version` changes only when a field changes meaning or goes away; new
    optional fields (here `pages`, `merges`, `blocks` and `figures`) keep it, so a reader of
    version 1 ignores what it does not know and a result written before they existed still
    validates.
    """

    schema_version: Literal[1] = 1
    doc_id: str = ""
    status: DocumentStatus
    error: ErrorInfo | None = None
    warnings: list[ErrorInfo] = Field(
        default_factory=list,
        description="Problems that did not stop the conversion, e.g. `repaired`: the file was "
        "damaged and repaired, so pages may be missing content",
    )
    num_pages: int = 0
    document_text: str = ""
    page_texts: dict[str, str] = Field(default_factory=dict)
    fallback_pages: list[int] = Field(default_factory=list)
    page_sources: dict[str, PageSource] = Field(default_factory=dict)
    output_format: OutputFormat = "markdown"
    content: str = ""
    source: str | None = Field(default=None, description="File name or URL of the input")
    engine: str = ""
    model: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    timings: dict[str, float] = Field(default_factory=dict)
    pages: list[PageSummary] = Field(
        default_factory=list, description="Every converted page, in page order"
    )
    merges: list[MergeApplied] = Field(
        default_factory=list, description="Cross-page pairs the model detected, in page order"
    )
    blocks: list[TextBlock] = Field(
        default_factory=list,
        description="The elements of document_text with their pages (what chunks are cut from)",
    )
    figures: list[Figure] = Field(
        default_factory=list, description="The figures linked from document_text (figures=crop)"
    )
