"""Asynchronous jobs: `POST /v1/jobs`, `GET /v1/jobs/{job_id}`, `GET /v1/jobs/{job_id}/events`.

A job is submitted like `/convert/file` (multipart) or `/convert/url` (JSON), plus an optional
`callback_url`, and answered at once with 202 and where to follow it. A URL is downloaded before
the 202, so a refused or unreachable URL is a 400 on submission, not a failed job. The events
stream is server-sent events: `progress` while queued or running, then one `completed` or
`failed`, each carrying the job's status as JSON; a comment line keeps idle streams open.
"""

from __future__ import annotations

import json

from aiohttp import web

from connectors.api.errors import InvalidRequest, NotFound
from connectors.api.jobs import Job
from connectors.api.keys import SERVICE, SETTINGS
from connectors.api.models import JobAccepted, JobUrlRequest, json_body
from connectors.api.routes_guide import fetched, uploaded
from connectors.api.uploads import read_json

__all__ = ["job_events", "job_status", "submit_job"]

#: An idle event stream gets a comment this often, so proxies do not close it.
HEARTBEAT_S = 15.0


async def submit_job(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    service = request.app[SERVICE]
    if request.content_type.startswith("multipart/"):
        async with uploaded(request, callbacks=True) as submission:
            job = await service.submit(submission)
    elif request.content_type == "application/json":
        body = await read_json(
            request, JobUrlRequest, timeout_s=settings.ocrflux_body_read_timeout_s
        )
        async with fetched(request, body, body.callback_url) as submission:
            job = await service.submit(submission)
    else:
        raise InvalidRequest("send multipart/form-data with a 'file', or JSON with a 'url'")
    status_url = f"/v1/jobs/{job.job_id}"
    accepted = JobAccepted(
        job_id=job.job_id,
        status=job.state,
        status_url=status_url,
        events_url=f"{status_url}/events",
    )
    return web.json_response(
        accepted.model_dump(mode="json"), status=202, headers={"Location": status_url}
    )


async def _job(request: web.Request) -> Job:
    job_id = request.match_info["job_id"]
    job = await request.app[SERVICE].find(job_id)
    if job is None:
        raise NotFound(f"no job {job_id[:64]!r} (unknown, or finished too long ago)")
    return job


async def job_status(request: web.Request) -> web.Response:
    job = await _job(request)
    return web.json_response(json_body(job.status()))


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
        event = status.status if status.status in ("completed", "failed") else "progress"
        data = json.dumps(json_body(status), separators=(",", ":"))
        await response.write(f"id: {number}\nevent: {event}\ndata: {data}\n\n".encode())
    await response.write_eof()
    return response
