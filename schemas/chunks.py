"""Chunks of a document's Markdown for retrieval (`output_format=chunks`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.results import DocumentStatus, ErrorInfo

#: How chunk sizes are counted without a model's tokenizer (`ocrflux.chunks.estimate_tokens`).
TOKEN_ESTIMATE = "one token per CJK character, one per 4 other characters (rounded up)"


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="Position in the document, from 0")
    text: str = Field(description="document_text[start:end]")
    start: int = Field(ge=0, description="Offset in document_text (Unicode code points)")
    end: int = Field(ge=0)
    pages: list[int] = Field(description="0-based pages the text came from")
    heading_path: list[str] = Field(
        default_factory=list, description="The headings the chunk is under, outermost first"
    )
    tokens: int = Field(ge=0, description=f"Estimated tokens: {TOKEN_ESTIMATE}")


class DocumentChunks(BaseModel):
    """A document's Markdown cut into chunks of at most `max_tokens` (estimated) tokens.

    In order, they cover the document text exactly once: only whitespace lies between one
    chunk's `end` and the next one's `start`."""

    schema_version: Literal[1] = 1
    kind: Literal["document_chunks"] = "document_chunks"
    doc_id: str = ""
    status: DocumentStatus
    error: ErrorInfo | None = None
    source: str | None = None
    num_pages: int = 0
    fallback_pages: list[int] = Field(default_factory=list)
    max_tokens: int
    token_estimate: str = TOKEN_ESTIMATE
    chunks: list[Chunk] = Field(default_factory=list)
