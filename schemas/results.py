"""Results of recognition: one page, and one whole document (OCRFlux's field names kept)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.options import OutputFormat

PageSource = Literal["model", "text_layer", "ocr", "none"]
DocumentStatus = Literal["completed", "partial", "failed"]


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

    @property
    def text(self) -> str:
        return "\n\n".join(self.elements)

    @property
    def succeeded(self) -> bool:
        """Whether the page takes part in cross-page merge detection."""
        return not self.fallback


class DocumentResult(BaseModel):
    """The result of converting one document."""

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
