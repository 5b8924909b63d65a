"""A document result in each output format, for every surface (CLI, SDK, HTTP API, S3 sink).

markdown   the document's Markdown (`document_text`)
text       plain text (`ocrflux.plaintext`)
json       the whole result: `schemas/json/document_result.schema.json`
chunks     `schemas.chunks.DocumentChunks` (`ocrflux.chunks`)
"""

from __future__ import annotations

from dataclasses import dataclass

from ocrflux.chunks import chunk_document, default_blocks
from ocrflux.plaintext import markdown_to_text
from schemas.chunks import DocumentChunks
from schemas.options import DEFAULT_CHUNK_TOKENS, OutputFormat
from schemas.results import DocumentResult

#: File suffix of each format, for outputs written next to their input.
SUFFIXES: dict[OutputFormat, str] = {
    "markdown": ".md",
    "text": ".txt",
    "json": ".json",
    "chunks": ".chunks.json",
}
MEDIA_TYPES: dict[OutputFormat, str] = {
    "markdown": "text/markdown; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
    "chunks": "application/json",
}


@dataclass(frozen=True)
class Rendered:
    body: str
    media_type: str
    suffix: str


def document_chunks(result: DocumentResult, max_tokens: int | None = None) -> DocumentChunks:
    """The result's Markdown in chunks of at most `max_tokens` (default 512) estimated tokens."""
    budget = max_tokens or DEFAULT_CHUNK_TOKENS
    text = result.document_text
    blocks = result.blocks or default_blocks(text)
    return DocumentChunks(
        doc_id=result.doc_id,
        status=result.status,
        error=result.error,
        source=result.source,
        num_pages=result.num_pages,
        fallback_pages=result.fallback_pages,
        max_tokens=budget,
        chunks=chunk_document(text, blocks, budget) if text else [],
    )


def structured(
    result: DocumentResult, fmt: OutputFormat, chunk_tokens: int | None = None
) -> DocumentResult | DocumentChunks | None:
    """The result as the object a JSON answer carries: itself (json), its chunks (chunks), or
    None for markdown and text, which answer with text."""
    if fmt == "json":
        return result
    if fmt == "chunks":
        return document_chunks(result, chunk_tokens)
    return None


def render_output(
    result: DocumentResult, fmt: OutputFormat | None = None, *, chunk_tokens: int | None = None
) -> Rendered:
    """The result in `fmt` (default: the format it was asked for); text ends with a newline."""
    fmt = fmt or result.output_format
    answer = structured(result, fmt, chunk_tokens)
    if answer is not None:
        body = answer.model_dump_json(indent=2)
    elif fmt == result.output_format:  # the content was made in this format
        body = result.content
    elif fmt == "text":
        body = markdown_to_text(result.document_text)
    else:
        body = result.document_text
    if not body.endswith("\n"):
        body += "\n"
    return Rendered(body, MEDIA_TYPES[fmt], SUFFIXES[fmt])
