"""Reading what a caller sends: multipart uploads and JSON bodies, within limits.

`upload_allowance` checks what the headers say before anything is read: a multipart body, and a
`Content-Length` not far above the limit (413), and gives the bytes to admit the request for.
`read_uploads` then streams the form part by part: the file goes to a spool file on disk (hashed
as it arrives), counted as it comes, so more than the limit is refused with 413 as soon as the
limit is passed; the small text fields are read into memory, at most `MAX_FIELD_BYTES` each. A
file name without an accepted extension is refused (400) before its bytes are read, as in the
guide; the bytes themselves are then judged by their magic numbers (`ocrflux.sniff`). A form
with a field twice (two files, say) is refused (422): which one the caller meant is a guess.

Every read of the body waits at most `timeout_s` for bytes: a body that stalls is answered 408
and its connection closed, and its spool file removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from connectors.api.errors import BodyTimeout, InvalidRequest
from connectors.api.spool import Spool, SpoolFolder
from ocrflux.errors import TooLarge, UnsupportedType
from ocrflux.filenames import text_name
from ocrflux.sniff import ACCEPTED_EXTENSIONS, is_accepted_filename, sniff
from schemas.options import ConversionOptions, FiguresMode

__all__ = [
    "ZIP",
    "Upload",
    "asks_zip",
    "options_from",
    "read_json",
    "read_uploads",
    "upload_allowance",
]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: Room for the multipart framing and the small form fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: Form fields other than the file are a few bytes; anything longer is not one of ours.
MAX_FIELD_BYTES = 8 * 1024
#: JSON bodies carry a URL and a few options.
MAX_JSON_BYTES = 64 * 1024
_CHUNK = 256 * 1024
#: The form fields and JSON keys that are conversion options (`pages`: "1-3,7").
_OPTION_FIELDS = (
    "output_format",
    "max_page_retries",
    "skip_cross_page_merge",
    "pages",
    "chunk_tokens",
    "figures",
    "figure_scale",
)
_FIELDS = (*_OPTION_FIELDS, "callback_url")
#: The answer format that is no conversion format: the Markdown and its figures in one ZIP
#: (the document is converted as markdown).
ZIP = "zip"
#: What a body that ends early or cannot be parsed raises from aiohttp's readers.
_MALFORMED = (ValueError, AssertionError, UnicodeError, HttpProcessingError)


@dataclass
class Upload:
    filename: str
    spool: Spool
    fields: dict[str, str] = field(default_factory=dict)


def upload_allowance(request: web.Request, *, max_bytes: int) -> int:
    """The bytes an upload may send (to admit it for), from its headers alone; refuses what
    the headers already show to be wrong."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("send the document as multipart/form-data with a 'file' field")
    limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    announced = request.content_length
    if announced is not None and announced > limit:
        raise TooLarge(f"the upload is {announced} bytes; the limit is {max_bytes}")
    return limit if announced is None else announced


async def read_uploads(
    request: web.Request,
    *,
    max_bytes: int,
    spools: SpoolFolder,
    timeout_s: float,
    max_files: int,
) -> list[Upload]:
    """The form's `file` parts in order (each in a spool file, each up to `max_bytes`, at most
    `max_files`), each with the form's text fields. The caller releases the spools."""
    try:
        reader = await request.multipart()
    except _MALFORMED as exc:
        raise InvalidRequest(f"not a valid multipart body: {exc}") from exc
    once = " (one document per request)" if max_files == 1 else ""
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    try:
        while (part := await _within(reader.next(), timeout_s)) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("nested multipart bodies are not supported")
            if part.name == "file" and len(uploads) == max_files > 1:
                raise InvalidRequest(f"at most {max_files} files per request")
            if part.name in fields or (part.name == "file" and len(uploads) == max_files):
                raise InvalidRequest(
                    f"the form has more than one {part.name!r} field; send each field once{once}"
                )
            if part.name == "file":
                uploads.append(await _read_file(part, max_bytes, spools, timeout_s))
            else:
                raw = await _read_field(part, timeout_s)
                if part.name in _FIELDS:
                    fields[part.name] = raw.decode("utf-8", errors="replace")
    except BaseException as exc:
        for upload in uploads:
            upload.spool.release()
        if isinstance(exc, _MALFORMED):
            raise InvalidRequest(f"not a valid multipart body: {exc}") from exc
        raise
    if not uploads:
        raise InvalidRequest("the form has no 'file' field")
    for upload in uploads:
        upload.fields = fields
    return uploads


async def _read_file(
    part: BodyPartReader, max_bytes: int, spools: SpoolFolder, timeout_s: float
) -> Upload:
    filename = text_name(part.filename or "")  # raw bytes in the header arrive as surrogates
    if not is_accepted_filename(filename):
        raise UnsupportedType(
            f"unsupported file type {filename!r}: accepted extensions are "
            f"{', '.join(sorted(ACCEPTED_EXTENSIONS))}"
        )
    writer = spools.writer()
    try:
        while chunk := await _within(part.read_chunk(_CHUNK), timeout_s):
            if writer.size + len(chunk) > max_bytes:
                raise TooLarge(f"the file is larger than the limit of {max_bytes} bytes")
            await writer.write(chunk)
        spool = await writer.finish()
    except BaseException:
        writer.discard()
        raise
    try:
        sniff(spool.head)  # EmptyInput / UnsupportedType (400) unless a document we convert
    except BaseException:
        spool.release()
        raise
    return Upload(filename=filename, spool=spool)


async def _read_field(part: BodyPartReader, timeout_s: float) -> bytes:
    """A text field (or one we do not know, read and dropped), at most `MAX_FIELD_BYTES`."""
    raw = bytearray()
    while chunk := await _within(part.read_chunk(MAX_FIELD_BYTES), timeout_s):
        raw += chunk
        if len(raw) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {part.name!r} is too long")
    return bytes(part.decode(bytes(raw)))


async def _within(step: Awaitable[T], timeout_s: float) -> T:
    """One read of the body, which must bring bytes within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await step
    except TimeoutError as exc:
        raise BodyTimeout(f"the request body stopped arriving: nothing for {timeout_s:g}s") from exc


async def read_json(request: web.Request, model: type[M], *, timeout_s: float) -> M:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise TooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    raw = bytearray()
    while len(raw) <= MAX_JSON_BYTES:
        chunk = await _within(request.content.read(MAX_JSON_BYTES + 1 - len(raw)), timeout_s)
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_JSON_BYTES:
        raise TooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(_validation_message(exc)) from exc


def asks_zip(values: Mapping[str, object]) -> bool:
    """Whether form fields or a JSON body ask for `output_format=zip`."""
    return values.get("output_format") == ZIP


def options_from(
    values: Mapping[str, object],
    *,
    default_retries: int,
    default_skip_merge: bool,
    default_figures: FiguresMode | None = None,
    zip_answer: str | None = None,
) -> ConversionOptions:
    """Conversion options from form fields or a JSON body; unset ones take the server's, and
    `figures` takes `default_figures`. `output_format=zip` converts as markdown with figures
    cropped unless the caller said otherwise, where the answer can be a ZIP (`zip_answer`
    None); elsewhere it is refused with `zip_answer` saying where to get one."""
    given = {k: v for k, v in values.items() if k in _OPTION_FIELDS and v not in (None, "")}
    if asks_zip(given):
        if zip_answer is not None:
            raise InvalidRequest(f"output_format=zip is not a conversion format here: {zip_answer}")
        given["output_format"] = "markdown"
        default_figures = "crop"
    if default_figures is not None:
        given.setdefault("figures", default_figures)
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
