"""Asynchronous jobs: `POST /v1/jobs`, `GET /v1/jobs` (newest first, `status`, `limit`,
`offset`), `GET /v1/jobs/{job_id}`, `GET /v1/jobs/{job_id}/events`,
`GET /v1/jobs/{job_id}/result`, `DELETE /v1/jobs/{job_id}`.

A job is submitted like `/convert/file` (multipart) or `/convert/url` (JSON), plus an optional
`callback_url`, and answered at once with 202 and where to follow it. A form with the `file`
field repeated is a batch (`batch.py`): one job per file, answered together (`JobsAccepted`).
A URL is downloaded before the 202, so a refused or unreachable URL is a 400 on submission,
not a failed job. The events stream is server-sent events: `progress` while queued or running,
then one `completed`, `failed` or `cancelled`, each carrying the job's status as JSON; a comment
line keeps idle streams open.

Jobs crop figures unless told `figures=none`: a json result carries their PNGs inline, and
`GET /v1/jobs/{job_id}/result` answers a completed job's result as a file in its format or the
`output_format` asked, `zip` included (`<stem>.md` and `<stem>_figures/*.png`).

DELETE cancels a job under way: direct mode stops its conversion and answers 200 with the job
`cancelled`; kafka mode sends the cancel to the workers and answers 202 with the job as it is
(it turns `cancelled` when their result comes back). A job that has finished keeps its state
and result: 409 `job_finished`, except for a job already cancelled (200).
"""

from __future__ import annotations

import asyncio
import json
from typing import get_args

from aiohttp import web

from connectors.api.batch import uploaded_files
from connectors.api.errors import ApiError, InvalidRequest, NotFound
from connectors.api.figure_answers import inline_figures, zip_body, zip_response, zip_stem
from connectors.api.jobs import MAX_LIST_LIMIT, Job
from connectors.api.keys import MODE, SERVICE, SETTINGS
from connectors.api.models import (
    AnswerFormat,
    JobAccepted,
    JobList,
    JobsAccepted,
    JobState,
    JobUrlRequest,
    json_body,
)
from connectors.api.routes_guide import fetched
from connectors.api.uploads import read_json
from ocrflux.result_formats import render_output
from schemas.options import OutputFormat

__all__ = ["cancel_job", "job_events", "job_result", "job_status", "list_jobs", "submit_job"]

#: An idle event stream gets a comment this often, so proxies do not close it.
HEARTBEAT_S = 15.0
DEFAULT_LIST_LIMIT = 50
_STATES: tuple[JobState, ...] = ("queued", "running", "completed", "failed", "cancelled")
_ANSWER_FORMATS: tuple[str, ...] = get_args(AnswerFormat)


class JobFinished(ApiError):
    status = 409
    code = "job_finished"


class JobNotCompleted(ApiError):
    status = 409
    code = "job_not_completed"


async def submit_job(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    service = request.app[SERVICE]
    if request.content_type.startswith("multipart/"):
        async with uploaded_files(request) as submissions:
            jobs = [await service.submit(submission) for submission in submissions]
        if len(jobs) > 1:
            batch = JobsAccepted(jobs=[_accepted(job) for job in jobs])
            return web.json_response(batch.model_dump(mode="json"), status=202)
        job = jobs[0]
    elif request.content_type == "application/json":
        body = await read_json(
            request, JobUrlRequest, timeout_s=settings.ocrflux_body_read_timeout_s
        )
        async with fetched(request, body, body.callback_url) as submission:
            job = await service.submit(submission)
    else:
        raise InvalidRequest("send multipart/form-data with a 'file', or JSON with a 'url'")
    accepted = _accepted(job)
    return web.json_response(
        accepted.model_dump(mode="json"), status=202, headers={"Location": accepted.status_url}
    )


def _accepted(job: Job) -> JobAccepted:
    status_url = f"/v1/jobs/{job.job_id}"
    return JobAccepted(
        job_id=job.job_id,
        status=job.state,
        status_url=status_url,
        events_url=f"{status_url}/events",
    )


async def _job(request: web.Request) -> Job:
    job_id = request.match_info["job_id"]
    job = await request.app[SERVICE].find(job_id)
    if job is None:
        raise NotFound(f"no job {job_id[:64]!r} (unknown, or finished too long ago)")
    return job


async def list_jobs(request: web.Request) -> web.Response:
    query = request.query
    wanted = query.get("status") or None
    state = next((s for s in _STATES if s == wanted), None)
    if wanted is not None and state is None:
        raise InvalidRequest(f"status must be one of {', '.join(_STATES)}")
    limit = _int_param(query.get("limit"), "limit", DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT)
    offset = _int_param(query.get("offset"), "offset", 0, 0, None)
    jobs, next_offset = request.app[SERVICE].store.listing(state, limit=limit, offset=offset)
    # The list is for finding jobs: each result is at its job's own URL.
    listed = JobList(
        jobs=[job.status().model_copy(update={"result": None}) for job in jobs],
        next_offset=next_offset,
    )
    return web.json_response(json_body(listed))


def _int_param(text: str | None, name: str, default: int, least: int, most: int | None) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer") from exc
    if value < least or (most is not None and value > most):
        bound = f"between {least} and {most}" if most is not None else f"at least {least}"
        raise InvalidRequest(f"{name} must be {bound}")
    return value


async def cancel_job(request: web.Request) -> web.Response:
    job = await _job(request)
    if job.terminal and job.state != "cancelled":
        raise JobFinished(f"job {job.job_id} has finished ({job.state}); nothing to cancel")
    await request.app[SERVICE].cancel(job)
    return web.json_response(json_body(job.status()), status=200 if job.terminal else 202)


async def job_status(request: web.Request) -> web.Response:
    job = await _job(request)
    return web.json_response(json_body(job.status()))


async def job_result(request: web.Request) -> web.Response:
    """The completed job's result as a file: in the job's format or the `output_format` asked
    (zip: `<stem>.md` and its figures; json: the whole result, figures inline)."""
    job = await _job(request)
    wanted = request.query.get("output_format") or job.output_format
    if wanted not in _ANSWER_FORMATS:
        raise InvalidRequest(f"output_format must be one of {', '.join(_ANSWER_FORMATS)}")
    if job.state != "completed" or job.result is None:
        why = f": {job.error.code}: {job.error.message}" if job.error else ""
        raise JobNotCompleted(f"job {job.job_id} is {job.state}{why}; no result to fetch")
    result = job.result
    fetch = request.app[MODE].fetch_figure
    if wanted == "zip":
        stem = zip_stem(job.source, job.source_key == "filename")
        return zip_response(await zip_body(result, stem, fetch), stem)
    fmt: OutputFormat = wanted  # type: ignore[assignment]
    if fmt == "json":
        result = await inline_figures(result, fetch)
    # Chunking a long document takes a while: off the event loop.
    rendered = await asyncio.to_thread(render_output, result, fmt, chunk_tokens=job.chunk_tokens)
    return web.Response(
        body=rendered.body.encode("utf-8"), headers={"Content-Type": rendered.media_type}
    )


async def job_events(request: web.Request) -> web.StreamResponse:
    job = await _job(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    number = 0
    async for status in request.app[SERVICE].store.changes(job, HEARTBEAT_S):
        if status is None:
            await response.write(b": keep-alive\n\n")
            continue
        number += 1
        terminal = ("completed", "failed", "cancelled")
        event = status.status if status.status in terminal else "progress"
        data = json.dumps(json_body(status), separators=(",", ":"))
        await response.write(f"id: {number}\nevent: {event}\ndata: {data}\n\n".encode())
    await response.write_eof()
    return response
