"""Reading what a caller sends: multipart uploads and JSON bodies, within limits.

An upload is streamed part by part, and its file counted as it arrives: more than the limit is
refused with 413 as soon as the limit is passed (a `Content-Length` far above it is refused
before reading anything), so no request holds more than `max_file_bytes` in memory. A file name
without an accepted extension is refused (400) before its bytes are read, as in the guide; the
bytes themselves are then judged by their magic numbers (`ocrflux.sniff`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from connectors.api.errors import ApiError, InvalidRequest
from ocrflux.errors import TooLarge
from ocrflux.sniff import ACCEPTED_EXTENSIONS, is_accepted_filename, sniff
from schemas.options import ConversionOptions

__all__ = ["Upload", "options_from", "read_json", "read_upload"]

M = TypeVar("M", bound=BaseModel)

#: Room for the multipart framing and the small form fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: Form fields other than the file are a few bytes; anything longer is not one of ours.
MAX_FIELD_BYTES = 8 * 1024
#: JSON bodies carry a URL and a few options.
MAX_JSON_BYTES = 64 * 1024
_CHUNK = 256 * 1024
_FIELDS = ("output_format", "max_page_retries", "skip_cross_page_merge", "callback_url")


@dataclass
class Upload:
    filename: str
    data: bytes
    fields: dict[str, str] = field(default_factory=dict)


async def read_upload(request: web.Request, *, max_bytes: int) -> Upload:
    """The multipart form's `file` and its text fields."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("send the document as multipart/form-data with a 'file' field")
    announced = request.content_length
    if announced is not None and announced > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise TooLarge(f"the upload is {announced} bytes; the limit is {max_bytes}")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise InvalidRequest(f"not a valid multipart body: {exc}") from exc
    fields: dict[str, str] = {}
    upload: Upload | None = None
    try:
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("nested multipart bodies are not supported")
            if part.name == "file":
                upload = await _read_file(part, max_bytes)
            elif part.name in _FIELDS:
                raw = await part.read(decode=True)
                if len(raw) > MAX_FIELD_BYTES:
                    raise InvalidRequest(f"form field {part.name!r} is too long")
                fields[part.name] = raw.decode("utf-8", errors="replace")
            else:
                await part.release()
    except (ValueError, AssertionError, UnicodeError, HttpProcessingError) as exc:
        raise InvalidRequest(f"not a valid multipart body: {exc}") from exc
    if upload is None:
        raise InvalidRequest("the form has no 'file' field")
    upload.fields = fields
    return upload


async def _read_file(part: BodyPartReader, max_bytes: int) -> Upload:
    filename = part.filename or ""
    if not is_accepted_filename(filename):
        raise ApiError(
            f"unsupported file type {filename!r}: accepted extensions are "
            f"{', '.join(sorted(ACCEPTED_EXTENSIONS))}"
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := await part.read_chunk(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(f"the file is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    sniff(data)  # EmptyInput / UnsupportedType (400) unless the bytes are a document we convert
    return Upload(filename=filename, data=data)


async def read_json(request: web.Request, model: type[M]) -> M:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise TooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise TooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(_validation_message(exc)) from exc


def options_from(
    values: dict[str, object], *, default_retries: int, default_skip_merge: bool
) -> ConversionOptions:
    """Conversion options from form fields or a JSON body; unset ones take the server's."""
    given = {k: v for k, v in values.items() if k in _FIELDS[:3] and v not in (None, "")}
    given.setdefault("max_page_retries", default_retries)
    given.setdefault("skip_cross_page_merge", default_skip_merge)
    if isinstance(given.get("skip_cross_page_merge"), str):
        given["skip_cross_page_merge"] = _boolean(str(given["skip_cross_page_merge"]))
    try:
        return ConversionOptions.model_validate(given)
    except ValidationError as exc:
        raise InvalidRequest(_validation_message(exc)) from exc


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InvalidRequest(f"skip_cross_page_merge must be true or false, not {text[:40]!r}")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(item) for item in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts) or "invalid request"
