"""The API's payloads as pydantic models: the deployment guide's shapes, and ours for jobs.

They are the single source of `/openapi.json` (`connectors.api.openapi`) and of every JSON body
the handlers write, so the documented schema and the answers cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.options import MAX_ATTEMPTS_LIMIT, OutputFormat
from schemas.results import ErrorInfo

JobState = Literal["queued", "running", "completed", "failed"]

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
    output_format: OutputFormat = "markdown"
    max_page_retries: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)
    skip_cross_page_merge: bool | None = None


class JobUrlRequest(ConvertUrlRequest):
    """`POST /v1/jobs` with a JSON body: a URL to convert, and an optional callback."""

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
    result: ConvertResponse | None = Field(default=None, description="When completed")
    error: ErrorInfo | None = Field(default=None, description="When failed")


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
