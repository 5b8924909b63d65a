"""The API's payloads as pydantic models: the deployment guide's shapes, and ours for jobs.

They are the single source of `/openapi.json` (`connectors.api.openapi`) and of every JSON body
the handlers write, so the documented schema and the answers cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.chunks import DocumentChunks
from schemas.options import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_FIGURE_SCALE,
    MAX_ATTEMPTS_LIMIT,
    MAX_CHUNK_TOKENS,
    MAX_FIGURE_SCALE,
    MIN_CHUNK_TOKENS,
    MIN_FIGURE_SCALE,
    FiguresMode,
    OutputFormat,
    Pages,
)
from schemas.results import DocumentResult, ErrorInfo

JobState = Literal["queued", "running", "completed", "failed", "cancelled"]
#: What an answer can be: a conversion format, or zip (the API's own: the Markdown and its
#: figures in one ZIP; the document is converted as markdown).
AnswerFormat = Literal["markdown", "text", "json", "chunks", "zip"]
#: Descriptions shared by the forms (`openapi.py`) and the JSON bodies.
FIGURES_GUIDE = (
    "crop: each figure the model marks is cropped as PNG and linked from the Markdown where it "
    "stood, as ![Figure N, page P](<figure-00N-page-P.png>); the PNGs come with output_format "
    "json (base64 `data`) or zip. Default none (crop with output_format=zip), so the guide's "
    "answer is unchanged unless asked"
)
FIGURES_JOBS = (
    "crop (default): each figure the model marks is cropped as PNG and linked from the Markdown "
    "where it stood; json results carry the PNGs (base64 `data`), and GET "
    "/v1/jobs/{job_id}/result?output_format=zip the Markdown with them. none: figures are left out"
)
FIGURE_SCALE = (
    f"With figures=crop: the page is rendered this many times larger than the model saw it "
    f"before cropping ({MIN_FIGURE_SCALE:g} to {MAX_FIGURE_SCALE:g}, default "
    f"{DEFAULT_FIGURE_SCALE:g})"
)

#: The guide's text for a conversion that failed; scripts may compare against it.
FAILED_TO_PARSE = "Failed to parse document"


class ConvertMetadata(BaseModel):
    """The guide's metadata: `filename` for uploads, `url` for `/convert/url`."""

    filename: str | None = Field(default=None, description="Uploaded file's name")
    url: str | None = Field(default=None, description="The URL the document came from")
    file_size: int = Field(ge=0, description="Bytes of the document")
    pages_processed: int = Field(ge=0, description="Pages converted")
    fallback_pages: list[int] = Field(
        default_factory=list, description="0-based pages the model could not read"
    )


class ConvertResponse(BaseModel):
    """The answer of `/convert/file` and `/convert/url` (the deployment guide's shape)."""

    status: Literal["success", "error"]
    format: OutputFormat
    content: str | None = Field(description="Markdown or plain text; null on error")
    error: str | None = Field(description=f'null, or "{FAILED_TO_PARSE}"')
    error_code: str | None = Field(default=None, description="Stable error code (ours)")
    error_detail: str | None = Field(default=None, description="What went wrong (ours)")
    warnings: list[ErrorInfo] = Field(
        default_factory=list,
        description="What the result should be read with (ours), e.g. `repaired`: the file was "
        "damaged and repaired, so pages may be missing content",
    )
    metadata: ConvertMetadata


class ErrorResponse(BaseModel):
    """Any refused request: the guide's `detail`, plus `status` and a stable `error_code`."""

    detail: str
    status: Literal["error"] = "error"
    error: str
    error_code: str


class ConvertUrlRequest(BaseModel):
    """`POST /convert/url` (the guide's fields); unset options take the server's defaults."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=8192, description="http(s) URL of a PDF or image")
    output_format: AnswerFormat = Field(
        default="markdown",
        description="markdown or text: the guide's answer; json: the whole document result "
        "(DocumentResult); chunks: chunks for retrieval (DocumentChunks); zip (ours): "
        "document.md and document_figures/*.png (application/zip)",
    )
    max_page_retries: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)
    skip_cross_page_merge: bool | None = None
    pages: Pages | None = Field(
        default=None,
        description='Only these pages: "1-3,7" or [[1, 3], [7, 7]] (1-based, inclusive; ours)',
    )
    chunk_tokens: int | None = Field(
        default=None,
        ge=MIN_CHUNK_TOKENS,
        le=MAX_CHUNK_TOKENS,
        description=f"Token budget of a chunk with output_format=chunks (default "
        f"{DEFAULT_CHUNK_TOKENS}; ours)",
    )
    figures: FiguresMode | None = Field(default=None, description=FIGURES_GUIDE)
    figure_scale: float | None = Field(
        default=None, ge=MIN_FIGURE_SCALE, le=MAX_FIGURE_SCALE, description=FIGURE_SCALE
    )


class JobUrlRequest(ConvertUrlRequest):
    """`POST /v1/jobs` with a JSON body: a URL to convert, and an optional callback."""

    output_format: OutputFormat = Field(
        default="markdown",
        description="The job's result: markdown or text (the guide's answer), json (the whole "
        "document result) or chunks; any result is also at GET /v1/jobs/{job_id}/result, "
        "there also as zip",
    )
    figures: FiguresMode | None = Field(default=None, description=FIGURES_JOBS)

    callback_url: str | None = Field(
        default=None, max_length=8192, description="POSTed the job's final status"
    )


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    vllm_configured: bool
    vllm_healthy: bool
    timestamp: str = Field(description="ISO 8601, UTC")
    mode: Literal["direct", "kafka"]
    engine: str = Field(description="Engine conversions use now: vllm, local, or workers")


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, bool]


class JobAccepted(BaseModel):
    job_id: str
    status: JobState
    status_url: str
    events_url: str


class JobStatus(BaseModel):
    """One job as `GET /v1/jobs/{id}`, its events and its callback show it."""

    job_id: str
    status: JobState
    pages_done: int = 0
    pages_total: int = 0
    created_at: float
    updated_at: float
    result: ConvertResponse | DocumentResult | DocumentChunks | None = Field(
        default=None,
        description="When completed: the guide's answer (output_format markdown or text), the "
        "whole document result with its figures' PNGs inline (json) or its chunks (chunks); "
        "GET /v1/jobs/{job_id}/result has it as a file, or as a zip",
    )
    error: ErrorInfo | None = Field(default=None, description="When failed or cancelled")


class JobList(BaseModel):
    """`GET /v1/jobs`: jobs newest first; `next_offset` asks for the following page."""

    jobs: list[JobStatus]
    next_offset: int | None = Field(description="null on the last page")


class JobsAccepted(BaseModel):
    """`POST /v1/jobs` with several `file` parts: one job per file, in the parts' order."""

    jobs: list[JobAccepted]


def json_body(model: BaseModel) -> dict[str, Any]:
    """A model as the JSON object the API writes (metadata without its unset source field)."""
    body = model.model_dump(mode="json")
    _drop_unset_source(body)
    return body


def _drop_unset_source(body: Any) -> None:
    if isinstance(body, dict):
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            for key in ("filename", "url"):
                if metadata.get(key) is None:
                    metadata.pop(key, None)
        for value in body.values():
            if isinstance(value, dict):
                _drop_unset_source(value)
