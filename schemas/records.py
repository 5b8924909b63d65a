"""Every record on the stream processor's topics, with its `kind` and `schema_version`.

Topics (prefix configurable, default `ocrflux`):

    <prefix>.documents     DocumentRequest                        key doc_id
    <prefix>.cancels       CancelRequest                          key doc_id, compacted
    <prefix>.pages         PageTask                               key "<doc_id>/<page>"
    <prefix>.page-results  PageDone | PairsDetected | TableMerged  key doc_id
                           | DocumentCancelled
    <prefix>.results       DocumentResult (schemas.results)       key doc_id, compacted
    <prefix>.progress      ProgressEvent                          key doc_id
    <prefix>.dlq           DlqRecord                              key as the original record

Binary payloads (documents, page images) travel base64-encoded inside the JSON, so that a
producer in any language can write them with a JSON library and validate them against the
exported JSON Schema (`schemas/json/`).
"""

from __future__ import annotations

import binascii
import time
from typing import Annotated, Any, Literal

import pybase64
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from schemas.codec import json_bytes
from schemas.options import ConversionOptions, OutputFormat
from schemas.page_ranges import selected_indices
from schemas.results import DocumentResult, ErrorInfo, PageResult, TokenUsage

SCHEMA_VERSION: Literal[1] = 1


def _now() -> float:
    return time.time()


def _bytes_from_base64(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return pybase64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not valid base64: {exc}") from exc
    return value


#: Raw bytes in Python, a base64 string in JSON.
Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_bytes_from_base64),
    PlainSerializer(pybase64.b64encode_as_string, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


class DocumentRequest(_Record):
    """A document to convert: its bytes inline, or a reference to them (claim check)."""

    kind: Literal["document_request"] = "document_request"
    doc_id: str | None = Field(
        default=None,
        description="Caller's id; default: a hash of the bytes and of the options "
        "that change the output, so resubmitting is idempotent",
    )
    content: Base64Bytes | None = Field(default=None, description="The document, inline")
    content_ref: str | None = Field(
        default=None, description="Where the bytes are: file://, s3:// or http(s)://"
    )
    content_sha256: str | None = Field(
        default=None, description="Hex digest of the bytes (required with content_ref)"
    )
    content_length: int | None = Field(default=None, ge=0)
    filename: str | None = None
    content_type: str | None = None
    options: ConversionOptions = Field(default_factory=ConversionOptions)
    metadata: dict[str, str] = Field(default_factory=dict, description="Returned untouched")
    reply_to: str | None = Field(default=None, description="Caller's routing hint, echoed")
    submitted_at: float = Field(default_factory=_now)

    @model_validator(mode="after")
    def _one_source(self) -> DocumentRequest:
        if (self.content is None) == (self.content_ref is None):
            raise ValueError("give exactly one of content and content_ref")
        return self


class CancelRequest(_Record):
    """Stop converting a document: every submission of `doc_id` made before `requested_at`
    (a later submission converts it again). A finished document is not touched."""

    kind: Literal["cancel_request"] = "cancel_request"
    doc_id: str
    requested_at: float = Field(default_factory=_now)
    reason: str | None = None


class DocumentInfo(BaseModel):
    """What later stages need to know about a document; travels with each of its pages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_page: int = Field(ge=0, description="First 0-based page index converted")
    stop_page: int = Field(
        ge=1,
        description="One past the last 0-based page index converted; the pages in between "
        "that are converted are those `options.pages` selects",
    )
    num_pages: int = Field(ge=1, description="Pages in the whole document")
    options: ConversionOptions
    source: str | None = Field(default=None, description="File name or URL of the input")
    engine: str = Field(default="", description="Engine that recognized the pages")
    model: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    reply_to: str | None = None
    submitted_at: float | None = None
    submission: str | None = Field(
        default=None,
        description="Where the request was read (documents partition@offset): tells a new "
        "submission of a document from a replay of the same one",
    )
    warnings: list[ErrorInfo] = Field(
        default_factory=list, description="Found on opening (e.g. `repaired`); go to the result"
    )

    @property
    def pages_total(self) -> int:
        return len(self.page_indices())

    def page_indices(self) -> list[int]:
        """The 0-based pages converted, in order: the selection (`options.pages`, which may skip
        pages), else every page from `first_page` to `stop_page`."""
        if self.options.pages is None:
            return list(range(self.first_page, self.stop_page))
        return selected_indices(self.options.pages, self.num_pages)


class PageTask(_Record):
    """One rendered page to recognize."""

    kind: Literal["page_task"] = "page_task"
    doc_id: str
    page: int = Field(ge=0, description="0-based index in the document")
    info: DocumentInfo
    png: Base64Bytes
    width: int
    height: int
    text_layer: str | None = None
    text_layer_deferred: bool = Field(
        default=False,
        description="True when the page was rendered without its text layer: `text_layer` is "
        "then None whether or not the page has one, and recognize takes it from the document "
        "request (at `info.submission`) if it needs it (a page the model fails)",
    )


class PageDone(_Record):
    kind: Literal["page_done"] = "page_done"
    doc_id: str
    info: DocumentInfo
    result: PageResult
    worker: str = ""


class PairsDetected(_Record):
    """Merge detection for pages `first` and `first + 1` finished (failed means no pairs)."""

    kind: Literal["pairs_detected"] = "pairs_detected"
    doc_id: str
    first: int
    pairs: list[tuple[int, int]]
    usage: TokenUsage = Field(default_factory=TokenUsage)
    error: ErrorInfo | None = Field(
        default=None, description="Why detection failed (no valid answer in every attempt)"
    )


class TableMerged(_Record):
    """One table merge finished; `html` is None when it failed (the tables stay two)."""

    kind: Literal["table_merged"] = "table_merged"
    doc_id: str
    page: int
    i: int
    j: int
    html: str | None
    usage: TokenUsage = Field(default_factory=TokenUsage)


class DocumentCancelled(_Record):
    """A stage stopped work on a cancelled document: the assembler answers it with one
    `cancelled` result per submission."""

    kind: Literal["document_cancelled"] = "document_cancelled"
    doc_id: str
    submission: str | None = Field(default=None, description="As in `DocumentInfo`")
    stage: Literal["split", "recognize"]
    num_pages: int = 0
    output_format: OutputFormat = "markdown"
    source: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    reply_to: str | None = None


PageResultsRecord = Annotated[
    PageDone | PairsDetected | TableMerged | DocumentCancelled, Field(discriminator="kind")
]

Stage = Literal[
    "queued", "split", "recognize", "assemble", "completed", "partial", "failed", "cancelled"
]


class ProgressEvent(_Record):
    kind: Literal["progress"] = "progress"
    doc_id: str
    stage: Stage
    pages_done: int = 0
    pages_total: int = 0
    at: float = Field(default_factory=_now)


class DlqRecord(_Record):
    """Anything a stage could not process: the original record and why."""

    kind: Literal["dlq"] = "dlq"
    topic: str
    key: str | None
    value: str = Field(description="The original value (UTF-8, or base64 when it is not text)")
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    stage: Literal["split", "recognize", "assemble"]
    error_code: str
    message: str
    exception: str | None = None
    doc_id: str | None = None
    at: float = Field(default_factory=_now)


class ResultRecord(DocumentResult):
    """A document result on the results topic. When the full result would not fit a Kafka
    record, its text fields are empty and `result_ref` says where the full JSON is."""

    kind: Literal["document_result"] = "document_result"
    result_ref: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    reply_to: str | None = None


AnyRecord = Annotated[
    DocumentRequest
    | CancelRequest
    | DocumentCancelled
    | PageTask
    | PageDone
    | PairsDetected
    | TableMerged
    | ProgressEvent
    | DlqRecord
    | ResultRecord,
    Field(discriminator="kind"),
]

_ANY = TypeAdapter(AnyRecord)


def encode(record: BaseModel) -> bytes:
    return json_bytes(record)


def decode(data: bytes | str) -> BaseModel:
    """Any topic record from its JSON (the `kind` field picks the model)."""
    return _ANY.validate_json(data)


#: The models whose JSON Schema is exported for producers in other languages.
EXPORTED: dict[str, type[BaseModel]] = {
    "document_request": DocumentRequest,
    "cancel_request": CancelRequest,
    "document_cancelled": DocumentCancelled,
    "page_task": PageTask,
    "page_done": PageDone,
    "pairs_detected": PairsDetected,
    "table_merged": TableMerged,
    "document_result": ResultRecord,
    "progress": ProgressEvent,
    "dlq": DlqRecord,
}
