"""A request id for every API request: the caller's `X-Request-Id` when it sends a usable one,
else a new one. The answer carries it back (`X-Request-Id`), and the request's access line
carries it as `request_id` (a field of its own with `OCRFLUX_LOG_FORMAT=json`), so that a
client's report can be matched with the server's log.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

__all__ = ["HEADER", "REQUEST_ID", "AccessLogger", "request_ids"]

HEADER = "X-Request-Id"
#: Where the id is kept in the request (`request[REQUEST_ID]`).
REQUEST_ID = "request_id"
# A caller's id goes into headers and logs as it is: only plain, short ones are taken.
_USABLE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get(HEADER, "")
    request[REQUEST_ID] = given if _USABLE.match(given) else uuid.uuid4().hex
    return await handler(request)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every answer, streamed ones and errors included, names its id."""
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers[HEADER] = request_id


class AccessLogger(AbstractAccessLogger):
    """One line per answered request: `REMOTE "METHOD PATH" STATUS BYTES SECONDS` (no query
    string: it may carry a caller's secrets), with the request's id."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
            extra={REQUEST_ID: request.get(REQUEST_ID)},
        )
