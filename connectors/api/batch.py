"""Several documents in one `POST /v1/jobs`: a multipart form with the `file` field repeated
(up to `MAX_BATCH_FILES`), the other fields once, applying to every file.

The form is read by `uploads.read_uploads`, as one file is (the same per-file limits, name and
type checks, spool files, body timeouts); the request is admitted for all its bytes before
the body is read, and refused with 503 when the mode cannot take that many jobs now. Each file
becomes a job of its own, answered together in the parts' order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from connectors.api.errors import Saturated
from connectors.api.keys import SERVICE, SETTINGS, SPOOLS
from connectors.api.service import Submission
from connectors.api.uploads import asks_zip, options_from, read_uploads, upload_allowance
from schemas.options import FiguresMode

__all__ = ["JOBS_ZIP", "MAX_BATCH_FILES", "uploaded_files"]

#: Files one request may carry: each holds a spool file and a job slot until it is submitted.
MAX_BATCH_FILES = 32
#: Where a job's ZIP is (a job is submitted in a conversion format; any result can be zipped).
JOBS_ZIP = "submit the job and fetch GET /v1/jobs/{job_id}/result?output_format=zip"


@asynccontextmanager
async def uploaded_files(
    request: web.Request,
    *,
    max_files: int = MAX_BATCH_FILES,
    callbacks: bool = True,
    default_figures: FiguresMode | None = "crop",
    zip_answer: str | None = JOBS_ZIP,
) -> AsyncIterator[list[Submission]]:
    """The files of an admitted multipart request, one submission each (`callbacks`: with the
    form's `callback_url`; `default_figures`, `zip_answer`: as `uploads.options_from`). Spools
    are released when the block ends: a job that reads its spool later holds it."""
    settings = request.app[SETTINGS]
    service = request.app[SERVICE]
    per_file = settings.max_file_bytes
    allowance = upload_allowance(request, max_bytes=per_file * max_files)
    with service.admit(allowance):
        uploads = await read_uploads(
            request,
            max_bytes=per_file,
            spools=request.app[SPOOLS],
            timeout_s=settings.ocrflux_body_read_timeout_s,
            max_files=max_files,
        )
        fields = uploads[0].fields
        try:
            mode = service.mode
            # One file is admitted or refused by the service itself, as every other request.
            if len(uploads) > 1 and mode is not None and len(uploads) > mode.capacity():
                raise Saturated(
                    f"{len(uploads)} documents, but the conversion pipeline takes "
                    f"{max(mode.capacity(), 0)} more now; retry later",
                    settings.ocrflux_retry_after_s,
                )
            options = options_from(
                dict(fields),
                default_retries=settings.max_page_retries,
                default_skip_merge=settings.skip_cross_page_merge,
                default_figures=default_figures,
                zip_answer=zip_answer,
            )
            callback_url = (fields.get("callback_url") or None) if callbacks else None
            if callback_url:
                service.callbacks.check(callback_url)
            yield [
                Submission(
                    u.spool, options, "filename", u.filename, callback_url, zip=asks_zip(fields)
                )
                for u in uploads
            ]
        finally:
            for upload in uploads:
                upload.spool.release()
