"""The deployment guide's endpoints: `/convert/file`, `/convert/url`, `/health`, `/models`.

Their shapes and status codes are the guide's (protocol section 7): a conversion that fails is
200 with `status: "error"` and `error: "Failed to parse document"`; a document we cannot take
(unsupported type, empty, too large, too many pages, refused URL) is 4xx with `detail`; no vLLM
to convert with is 503. Every answer carries `status`, and errors a stable `error_code`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from connectors.api.errors import ApiError, Unavailable, error_response
from connectors.api.jobs import Job, convert_response
from connectors.api.keys import HTTP, MODE, SERVICE, SETTINGS, VLLM
from connectors.api.models import ConvertUrlRequest, HealthResponse, json_body
from connectors.api.service import Submission
from connectors.api.uploads import options_from, read_json, read_upload
from ocrflux.chat import ChatAnswerError
from ocrflux.errors import ERROR_CLASSES, InputError, ModelUnavailable
from ocrflux.sniff import sniff
from schemas.results import DocumentResult, ErrorInfo

__all__ = ["convert_file", "convert_url", "fetch_submission", "health", "models"]


async def convert_file(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    upload = await read_upload(request, max_bytes=settings.max_file_bytes)
    options = options_from(
        dict(upload.fields),
        default_retries=settings.max_page_retries,
        default_skip_merge=settings.skip_cross_page_merge,
    )
    submission = Submission(upload.data, options, "filename", upload.filename)
    return await _convert(request, submission)


async def convert_url(request: web.Request) -> web.Response:
    body = await read_json(request, ConvertUrlRequest)
    submission = await fetch_submission(request, body)
    return await _convert(request, submission)


async def fetch_submission(
    request: web.Request, body: ConvertUrlRequest, callback_url: str | None = None
) -> Submission:
    """Download the URL (SSRF-guarded, size and time limits) and check its type."""
    settings = request.app[SETTINGS]
    options = options_from(
        body.model_dump(),
        default_retries=settings.max_page_retries,
        default_skip_merge=settings.skip_cross_page_merge,
    )
    if callback_url:
        request.app[SERVICE].callbacks.check(callback_url)
    data = await request.app[HTTP].get(
        body.url, max_bytes=settings.max_file_bytes, timeout_s=settings.ocrflux_fetch_timeout_s
    )
    sniff(data)  # the guide's "cannot determine the URL's type" is 400 here too
    return Submission(data, options, "url", body.url, callback_url)


async def _convert(request: web.Request, submission: Submission) -> web.Response:
    service = request.app[SERVICE]
    timeout_s = request.app[SETTINGS].ocrflux_sync_timeout_s
    job = await service.submit(submission)
    if not await service.store.wait(job, timeout_s):
        return error_response(
            504, "timeout", f"no result within {timeout_s:g}s; follow /v1/jobs/{job.job_id}"
        )
    result = job.result if job.result is not None else _failed(job)
    if result.status == "failed":
        code = result.error.code if result.error else "internal"
        cls = ERROR_CLASSES.get(code)
        if cls is not None and issubclass(cls, InputError):
            message = result.error.message if result.error else code
            return error_response(cls.http_status, code, message)
    response = convert_response(
        result,
        source_key=submission.source_key,
        source=submission.source,
        file_size=len(submission.data),
    )
    return web.json_response(json_body(response))


def _failed(job: Job) -> DocumentResult:
    return DocumentResult(
        doc_id=job.job_id,
        status="failed",
        error=job.error or ErrorInfo(code="internal", message="conversion failed"),
        output_format=job.output_format,
    )


async def health(request: web.Request) -> web.Response:
    vllm = request.app[VLLM]
    mode = request.app[MODE]
    healthy = vllm is not None and any((await vllm.probe()).values())
    checks = await mode.ready()
    if mode.name == "direct":
        engine = mode.current_engine()  # type: ignore[union-attr]
        usable = engine != "vllm" or healthy
    else:
        engine, usable = "workers", checks.get("kafka", False)
    body = HealthResponse(
        status="healthy" if usable else "degraded",
        vllm_configured=vllm is not None,
        vllm_healthy=healthy,
        timestamp=datetime.now(UTC).isoformat(),
        mode=request.app[SETTINGS].ocrflux_mode,
        engine=engine,
    )
    return web.json_response(body.model_dump(mode="json"))


async def models(request: web.Request) -> web.Response:
    vllm = request.app[VLLM]
    if vllm is None:
        raise Unavailable("vLLM is not configured (OCRFLUX_ENGINE=local)")
    try:
        return web.json_response(await vllm.models())
    except ModelUnavailable as exc:
        raise Unavailable(exc.message) from exc
    except ChatAnswerError as exc:
        raise _BadGateway(str(exc)) from exc


class _BadGateway(ApiError):
    status = 502
    code = "model_error"
