"""HTTP errors of the API, and the one function that writes them.

Every refused request is `ErrorResponse` JSON (`detail` as in the guide, `status: "error"` so
scripts that check `status` keep working, and a stable `error_code`). Domain errors from the core
(`ocrflux.errors`) keep their own code and HTTP status; the API adds a few of its own:

    ApiError                       code                 HTTP
    ├── Unauthorized               "unauthorized"       401
    ├── NotFound                   "not_found"          404
    ├── BodyTimeout                "body_timeout"       408 (and the connection is closed)
    ├── InvalidRequest             "invalid_request"    422
    ├── Saturated                  "saturated"          503 + Retry-After
    └── (any OcrfluxError)         its code             its http_status
    UrlRefused(FetchFailed)        "url_refused"        400  (streams.blobstore.url_policy)
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from connectors.api.models import ErrorResponse
from ocrflux.errors import OcrfluxError
from streams.blobstore.url_policy import UrlRefused as UrlRefused  # the API's name for it


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"
    #: Close the connection after the answer instead of reading what is left of the body.
    close_connection: bool = False

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="ocrflux"'})


class NotFound(ApiError):
    status = 404
    code = "not_found"


class BodyTimeout(ApiError):
    """The request body stopped arriving: nothing came for the body read timeout."""

    status = 408
    code = "body_timeout"
    close_connection = True


class InvalidRequest(ApiError):
    status = 422
    code = "invalid_request"


class Saturated(ApiError):
    """The pipeline has as much work as it may hold; the client should come back later."""

    status = 503
    code = "saturated"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class Unavailable(ApiError):
    """A backend the request needs (vLLM, Kafka) does not answer."""

    status = 503
    code = "vllm_unavailable"

    def __init__(self, detail: str, code: str = "vllm_unavailable", retry_after_s: int = 5):
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})
        self.code = code


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = ErrorResponse(detail=detail, error=detail, error_code=code)
    return web.json_response(body.model_dump(mode="json"), status=status, headers=headers)


def response_for(exc: ApiError | OcrfluxError) -> web.Response:
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.code, exc.detail, exc.headers)
        if exc.close_connection:
            response.force_close()
        return response
    return error_response(exc.http_status, exc.code, exc.message)
