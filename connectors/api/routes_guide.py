"""The deployment guide's endpoints: `/convert/file`, `/convert/url`, `/health`, `/models`.

Their shapes and status codes are the guide's (protocol section 7) for `output_format` markdown
and text; `json` answers with the whole document result and `chunks` with its chunks for
retrieval (`ocrflux.result_formats`), both `application/json`; `zip` (ours) with the Markdown
as `<stem>.md` and its figures in `<stem>_figures/` (`figure_answers`). Figures are cropped only
when asked (`figures=crop`, or `output_format=zip`), so the guide's answer stays as it was:
with `figures=crop` its Markdown links each figure by file name, and json carries the PNGs
inline (base64). A conversion that fails is
200 with `status: "error"` and `error: "Failed to parse document"`; a document we cannot take
(unsupported type, empty, too large, too many pages, refused URL) is 4xx with `detail`; no vLLM
to convert with is 503 with `Retry-After`, also when vLLM stopped answering during the
conversion (`vllm_unavailable`). Every answer carries `status`, and errors a stable `error_code`.

`uploaded` (one file, through `batch.uploaded_files`) and `fetched` turn a request into a
`Submission`; `fetched` serves the jobs routes as well. The request is admitted before its body
is read, and its spool file released when it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from aiohttp import web

from connectors.api.batch import JOBS_ZIP, uploaded_files
from connectors.api.errors import ApiError, Unavailable, error_response
from connectors.api.figure_answers import inline_figures, zip_body, zip_response, zip_stem
from connectors.api.jobs import Job, convert_response
from connectors.api.keys import HTTP, MODE, SERVICE, SETTINGS, SPOOLS, VLLM
from connectors.api.models import ConvertUrlRequest, HealthResponse, JobUrlRequest, json_body
from connectors.api.service import Submission
from connectors.api.uploads import asks_zip, options_from, read_json
from ocrflux.chat import ChatAnswerError
from ocrflux.errors import ERROR_CLASSES, InputError, ModelUnavailable
from ocrflux.result_formats import render_output
from ocrflux.sniff import sniff
from schemas.results import DocumentResult, ErrorInfo

__all__ = ["convert_file", "convert_url", "fetched", "health", "models", "uploaded"]


async def convert_file(request: web.Request) -> web.Response:
    async with uploaded(request) as submission:
        job = await request.app[SERVICE].submit(submission)
    return await _answer(request, job, submission)


async def convert_url(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await read_json(
        request, ConvertUrlRequest, timeout_s=settings.ocrflux_body_read_timeout_s
    )
    async with fetched(request, body) as submission:
        job = await request.app[SERVICE].submit(submission)
    return await _answer(request, job, submission)


@asynccontextmanager
async def uploaded(request: web.Request) -> AsyncIterator[Submission]:
    """The one file of an admitted multipart request (the guide's form has no callback, and
    figures only when asked)."""
    async with uploaded_files(
        request, max_files=1, callbacks=False, default_figures=None, zip_answer=None
    ) as (submission,):
        yield submission


@asynccontextmanager
async def fetched(
    request: web.Request, body: ConvertUrlRequest, callback_url: str | None = None
) -> AsyncIterator[Submission]:
    """The document at the URL of an admitted request: downloaded (SSRF-guarded, size and time
    limits), its type checked, then spooled so that a queued job does not keep it in memory.
    A job (`JobUrlRequest`) crops figures unless told not to; the guide's endpoint only when
    asked."""
    settings = request.app[SETTINGS]
    service = request.app[SERVICE]
    job = isinstance(body, JobUrlRequest)
    values = body.model_dump()
    options = options_from(
        values,
        default_retries=settings.max_page_retries,
        default_skip_merge=settings.skip_cross_page_merge,
        default_figures="crop" if job else None,
        zip_answer=JOBS_ZIP if job else None,
    )
    if callback_url:
        service.callbacks.check(callback_url)
    with service.admit():
        data = await request.app[HTTP].get(
            body.url, max_bytes=settings.max_file_bytes, timeout_s=settings.ocrflux_fetch_timeout_s
        )
        sniff(data)  # the guide's "cannot determine the URL's type" is 400 here too
        spool = await request.app[SPOOLS].spool(data)
        del data
        try:
            yield Submission(spool, options, "url", body.url, callback_url, zip=asks_zip(values))
        finally:
            spool.release()


async def _answer(request: web.Request, job: Job, submission: Submission) -> web.Response:
    """Wait for the job; the guide's answer for its result."""
    settings = request.app[SETTINGS]
    timeout_s = settings.ocrflux_sync_timeout_s
    if not await request.app[SERVICE].store.wait(job, timeout_s):
        return error_response(
            504, "timeout", f"no result within {timeout_s:g}s; follow /v1/jobs/{job.job_id}"
        )
    result = job.result if job.result is not None else _failed(job)
    refusal = _refusal(result, settings.ocrflux_retry_after_s)
    if refusal is not None:
        return refusal
    options = submission.options
    fetch = request.app[MODE].fetch_figure
    if submission.zip and result.status not in ("failed", "cancelled"):  # ours
        stem = zip_stem(submission.source, submission.source_key == "filename")
        return zip_response(await zip_body(result, stem, fetch), stem)
    if options.output_format in ("json", "chunks"):  # ours: the guide's shape is for content
        if options.output_format == "json":
            result = await inline_figures(result, fetch)
        # Chunking a long document takes a while: off the event loop.
        rendered = await asyncio.to_thread(
            render_output, result, options.output_format, chunk_tokens=options.chunk_tokens
        )
        return web.Response(text=rendered.body, content_type="application/json")
    response = convert_response(
        result,
        source_key=submission.source_key,
        source=submission.source,
        file_size=submission.spool.size,
    )
    return web.json_response(json_body(response))


def _refusal(result: DocumentResult, retry_after_s: int) -> web.Response | None:
    """A failed conversion that is answered with an HTTP error rather than the guide's 200
    `status: "error"`: the document's fault (its code's 4xx), or no model answered (503)."""
    if result.status != "failed" or result.error is None:
        return None
    error = result.error
    cls = ERROR_CLASSES.get(error.code)
    if cls is not None and issubclass(cls, InputError):
        return error_response(cls.http_status, error.code, error.message)
    if cls is not None and issubclass(cls, ModelUnavailable):
        retry = {"Retry-After": str(retry_after_s)}
        return error_response(cls.http_status, error.code, error.message, retry)
    return None


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
