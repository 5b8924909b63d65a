"""The OpenAPI 3.1 document of the API, built from the pydantic models (`connectors.api.models`),
and the Swagger UI page that renders it from assets of an installed package (no CDN).

OpenAPI 3.1 uses JSON Schema 2020-12, which is what `model_json_schema` writes, so the models'
schemas go into `components/schemas` unchanged. The multipart forms are written out here: they
are the guide's form fields, not a model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connectors.api.batch import MAX_BATCH_FILES
from connectors.api.figure_answers import ZIP_MEDIA_TYPE
from connectors.api.models import (
    FIGURE_SCALE,
    FIGURES_GUIDE,
    FIGURES_JOBS,
    AnswerFormat,
    ConvertResponse,
    ConvertUrlRequest,
    ErrorResponse,
    HealthResponse,
    JobAccepted,
    JobList,
    JobsAccepted,
    JobStatus,
    JobUrlRequest,
    ReadyResponse,
)
from schemas.chunks import DocumentChunks
from schemas.options import (
    DEFAULT_CHUNK_TOKENS,
    MAX_ATTEMPTS_LIMIT,
    MAX_CHUNK_TOKENS,
    MAX_FIGURE_SCALE,
    MIN_CHUNK_TOKENS,
    MIN_FIGURE_SCALE,
    FiguresMode,
    OutputFormat,
)
from schemas.results import DocumentResult

__all__ = ["DOCS_HTML", "build_openapi", "swagger_ui_dir"]

_REQUESTS: tuple[type[BaseModel], ...] = (ConvertUrlRequest, JobUrlRequest)
_RESPONSES: tuple[type[BaseModel], ...] = (
    ConvertResponse,
    DocumentResult,
    DocumentChunks,
    ErrorResponse,
    HealthResponse,
    ReadyResponse,
    JobAccepted,
    JobStatus,
    JobList,
    JobsAccepted,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _error(description: str) -> dict[str, Any]:
    return _json(ErrorResponse, description)


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}}


def _unavailable(description: str) -> dict[str, Any]:
    return {**_error(description), "headers": _RETRY_AFTER}


def _form(*, jobs: bool) -> dict[str, Any]:
    """The multipart form of `/convert/file` or (`jobs`) of `POST /v1/jobs`."""
    formats = get_args(OutputFormat) if jobs else get_args(AnswerFormat)
    zip_answer = (
        "; zip: at GET /v1/jobs/{job_id}/result?output_format=zip"
        if jobs
        else "; zip: <stem>.md and <stem>_figures/*.png (application/zip)"
    )
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "PDF or image"},
        "output_format": {
            "type": "string",
            "enum": list(formats),
            "default": "markdown",
            "description": "markdown or text: the guide's answer; json: the whole document "
            f"result; chunks: chunks for retrieval{zip_answer}",
        },
        "max_page_retries": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_LIMIT},
        "skip_cross_page_merge": {"type": "boolean"},
        "pages": {
            "type": "string",
            "pattern": r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$",
            "description": "Only these pages, e.g. 1-3,7 (1-based, inclusive)",
        },
        "chunk_tokens": {
            "type": "integer",
            "minimum": MIN_CHUNK_TOKENS,
            "maximum": MAX_CHUNK_TOKENS,
            "description": f"With output_format=chunks: a chunk's token budget (default "
            f"{DEFAULT_CHUNK_TOKENS})",
        },
        "figures": {
            "type": "string",
            "enum": list(get_args(FiguresMode)),
            "default": "crop" if jobs else "none",
            "description": FIGURES_JOBS if jobs else FIGURES_GUIDE,
        },
        "figure_scale": {
            "type": "number",
            "minimum": MIN_FIGURE_SCALE,
            "maximum": MAX_FIGURE_SCALE,
            "description": FIGURE_SCALE,
        },
    }
    if jobs:
        properties["callback_url"] = {"type": "string", "description": "POSTed the final status"}
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": properties}
            }
        },
    }


_INPUT_ERRORS = {
    "400": _error("Unsupported type or extension, empty document, refused or unreadable URL"),
    "401": _error("Missing or wrong API key"),
    "408": _error("The request body stopped arriving (nothing for OCRFLUX_BODY_READ_TIMEOUT_S)"),
    "413": _error("Document larger than the upload limit"),
    "422": _error("Invalid or repeated fields, too many pages, corrupt or encrypted document"),
    "503": _unavailable(
        "Saturated or too many upload bytes in flight (answered before the body is read), or "
        "no vLLM / Kafka to convert with, or vLLM stopped answering during the conversion"
    ),
}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_RESULT_FORMAT = {
    "name": "output_format",
    "in": "query",
    "description": "Default: the format the job was submitted with",
    "schema": {"type": "string", "enum": list(get_args(AnswerFormat))},
}
_ZIP = {"schema": {"type": "string", "contentMediaType": ZIP_MEDIA_TYPE}}
_NOT_FOUND = {"401": _error("Missing or wrong API key"), "404": _error("Unknown job")}
_PUBLIC: list[dict[str, list[str]]] = []
#: One server-sent event of a job's stream.
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string", "enum": ["progress", "completed", "failed"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


def _paths() -> dict[str, Any]:
    convert_ok = {
        "description": "Converted, or failed with status 'error' (output_format markdown or "
        "text, or zip when the conversion failed); the whole document result with its figures' "
        "PNGs inline (json) or its chunks (chunks); a ZIP of <stem>.md and <stem>_figures/*.png "
        "(zip; <stem>: the upload's name without suffix, or document)",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [_ref(ConvertResponse), _ref(DocumentResult), _ref(DocumentChunks)]
                }
            },
            ZIP_MEDIA_TYPE: _ZIP,
        },
    }
    return {
        "/convert/file": {
            "post": {
                "summary": "Convert an uploaded PDF or image (the deployment guide's API)",
                "operationId": "convert_file",
                "requestBody": _form(jobs=False),
                "responses": {
                    "200": convert_ok,
                    **_INPUT_ERRORS,
                    "504": _error("No result in time"),
                },
            }
        },
        "/convert/url": {
            "post": {
                "summary": "Convert a document at an http(s) URL (the deployment guide's API)",
                "operationId": "convert_url",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(ConvertUrlRequest)}},
                },
                "responses": {
                    "200": convert_ok,
                    **_INPUT_ERRORS,
                    "504": _error("No result in time"),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness and vLLM's health (no key needed)",
                "operationId": "health",
                "security": _PUBLIC,
                "responses": {"200": _json(HealthResponse, "The API answers")},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness for a load balancer (no key needed)",
                "operationId": "ready",
                "security": _PUBLIC,
                "responses": {
                    "200": _json(ReadyResponse, "Ready to take work"),
                    "503": _json(ReadyResponse, "Not ready: see checks"),
                },
            }
        },
        "/models": {
            "get": {
                "summary": "The models vLLM serves (its /v1/models answer)",
                "operationId": "models",
                "responses": {
                    "200": {
                        "description": "vLLM's answer",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "401": _error("Missing or wrong API key"),
                    "502": _error("vLLM answered with an error"),
                    "503": _unavailable("vLLM not configured or not reachable"),
                },
            }
        },
        "/v1/jobs": {
            "post": {
                "summary": "Submit a conversion job: an upload (multipart) or a URL (JSON); "
                f"repeat `file` (up to {MAX_BATCH_FILES}) for one job per file",
                "operationId": "submit_job",
                "requestBody": {
                    "required": True,
                    "content": {
                        **_form(jobs=True)["content"],
                        "application/json": {"schema": _ref(JobUrlRequest)},
                    },
                },
                "responses": {
                    "202": {
                        "description": "Accepted: the job, or with `file` repeated the jobs in "
                        "the parts' order",
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": [_ref(JobAccepted), _ref(JobsAccepted)]}
                            }
                        },
                    },
                    **_INPUT_ERRORS,
                },
            },
            "get": {
                "summary": "Jobs this instance knows, newest first (results: at each job's URL)",
                "operationId": "list_jobs",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["queued", "running", "completed", "failed", "cancelled"],
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "description": "`next_offset` of the previous page",
                        "schema": {"type": "integer", "minimum": 0, "default": 0},
                    },
                ],
                "responses": {
                    "200": _json(JobList, "A page of jobs"),
                    "422": _error("A bad status, limit or offset"),
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "A job's status, pages done and total, and its result when completed",
                "operationId": "job_status",
                "parameters": [_JOB_ID],
                "responses": {"200": _json(JobStatus, "The job"), **_NOT_FOUND},
            },
            "delete": {
                "summary": "Cancel a job under way",
                "operationId": "cancel_job",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _json(JobStatus, "Cancelled (direct mode, or cancelled already)"),
                    "202": _json(
                        JobStatus, "Kafka mode: the workers were told; the job turns cancelled"
                    ),
                    "409": _error("The job finished (completed or failed): its result stands"),
                    "503": _unavailable("Kafka did not take the cancel"),
                    **_NOT_FOUND,
                },
            },
        },
        "/v1/jobs/{job_id}/result": {
            "get": {
                "summary": "A completed job's result as a file, in its format or another "
                "(zip: the Markdown and its figures)",
                "operationId": "job_result",
                "parameters": [_JOB_ID, _RESULT_FORMAT],
                "responses": {
                    "200": {
                        "description": "markdown, text, json (DocumentResult, figures inline), "
                        "chunks (DocumentChunks) or zip (<stem>.md and <stem>_figures/*.png)",
                        "content": {
                            "text/markdown": {"schema": {"type": "string"}},
                            "text/plain": {"schema": {"type": "string"}},
                            "application/json": {  # a result validates as chunks too
                                "schema": {"anyOf": [_ref(DocumentResult), _ref(DocumentChunks)]}
                            },
                            ZIP_MEDIA_TYPE: _ZIP,
                        },
                    },
                    "409": _error("The job has not completed (queued, running, failed)"),
                    "422": _error("An output_format that is none of the formats"),
                    **_NOT_FOUND,
                },
            }
        },
        "/v1/jobs/{job_id}/events": {
            "get": {
                "summary": "Server-sent events: `progress`, then `completed`, `failed` or "
                "`cancelled`",
                "operationId": "job_events",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": {
                        "description": "Each event's data is the job's status (JobStatus)",
                        "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                    },
                    **_NOT_FOUND,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _error("Missing or wrong API key"),
                },
            }
        },
    }


def build_openapi(*, version: str, auth: bool) -> dict[str, Any]:
    """The OpenAPI document; `auth` adds the API-key schemes to every operation but health."""
    pairs = [(m, "validation") for m in _REQUESTS] + [(m, "serialization") for m in _RESPONSES]
    _, top = models_json_schema(pairs, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    components: dict[str, Any] = {"schemas": top.get("$defs", {})}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "OCRFlux Stream API",
            "version": version,
            "description": "PDFs and images to Markdown or plain text with OCRFlux-3B. The "
            "deployment guide's endpoints, plus asynchronous jobs with progress and callbacks.",
        },
        "paths": _paths(),
        "components": components,
    }
    if auth:
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        document["security"] = [{"ApiKey": []}, {"Bearer": []}]
    else:
        for item in document["paths"].values():
            for operation in item.values():
                operation["responses"].pop("401", None)
                operation.pop("security", None)
    return document


def swagger_ui_dir() -> Path:
    """The Swagger UI assets of the installed `swagger-ui-py` package (never fetched)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: pip install swagger-ui-py")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"no Swagger UI assets in {folder}")
    return folder


# Relative URLs, so the page also works behind a path prefix. validatorUrl: null keeps Swagger UI
# from sending the document to its public validator (no network besides this server).
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>OCRFlux Stream API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" href="docs/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""
