"""Figures in the API's answers (issue 14): inline in a JSON result, or beside the Markdown in
a ZIP.

A result converted in this process (direct mode) carries its figures' PNGs inline (`data`);
one from the stream processor (kafka mode) lists where they are stored (`ref`, a blob URL).
`inline_figures` makes either carry them inline, fetching what is stored with the mode's blob
fetcher (`Mode.fetch_figure`); `zip_body` writes `<stem>.md` with its links rewritten into
`<stem>_figures/` and the PNGs there (`ocrflux.figures.figure_files`). A figure that cannot be
had is a `figure_unavailable` warning, never a failed answer.
"""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import quote

import pybase64
from aiohttp import web

from ocrflux.figures import figure_files, figure_pngs
from ocrflux.result_formats import render_output
from schemas.results import DocumentResult

__all__ = [
    "ZIP_MEDIA_TYPE",
    "Fetch",
    "inline_figures",
    "zip_body",
    "zip_response",
    "zip_stem",
]

ZIP_MEDIA_TYPE = "application/zip"
#: The stem of a ZIP whose document came without a usable file name (a URL, say).
DEFAULT_STEM = "document"
#: Characters kept out of a ZIP's entry names and its download name.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]')

Fetch = Callable[[str], Awaitable[bytes]]


def _stored(result: DocumentResult) -> DocumentResult:
    """The result with only the figures that are stored elsewhere and not carried inline."""
    stored = [f for f in result.figures if f.data is None and f.ref and "://" in f.ref]
    return result.model_copy(update={"figures": stored})


async def inline_figures(result: DocumentResult, fetch: Fetch) -> DocumentResult:
    """The result with every figure's PNG inline (base64 `data`): those stored elsewhere are
    fetched with `fetch`. A figure already without either (it could not be cropped) keeps the
    warning it has."""
    stored = _stored(result)
    if not stored.figures:
        return result
    pngs, warnings = await figure_pngs(stored, fetch)
    figures = [
        f.model_copy(update={"data": pybase64.b64encode_as_string(pngs[f.number])})
        if f.data is None and f.number in pngs
        else f
        for f in result.figures
    ]
    return result.model_copy(update={"figures": figures, "warnings": [*result.warnings, *warnings]})


def zip_stem(source: str | None, from_upload: bool) -> str:
    """The name a ZIP's Markdown gets (`<stem>.md`): the uploaded file's name without its
    suffix, or `document` (a URL, or a name with nothing usable in it)."""
    if not from_upload or not source:
        return DEFAULT_STEM
    name = PureWindowsPath(PurePosixPath(source).name).name  # either kind of folder dropped
    stem = _UNSAFE.sub("_", PurePosixPath(name).stem).strip(" .")
    return stem or DEFAULT_STEM


async def zip_body(result: DocumentResult, stem: str, fetch: Fetch) -> bytes:
    """`<stem>.md` (the document's Markdown, linked into `<stem>_figures/`) and the figures'
    PNGs beside it, as a ZIP."""
    pngs, _ = await figure_pngs(result, fetch)
    linked, files = figure_files(result, stem, pngs)
    markdown = render_output(linked, "markdown").body
    return await asyncio.to_thread(_zipped, f"{stem}.md", markdown.encode("utf-8"), files)


def _zipped(name: str, markdown: bytes, files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, markdown, compress_type=zipfile.ZIP_DEFLATED)
        for path, png in files.items():  # PNG is compressed already
            archive.writestr(path, png, compress_type=zipfile.ZIP_STORED)
    return buffer.getvalue()


def zip_response(body: bytes, stem: str) -> web.Response:
    """The ZIP as a download named `<stem>.zip` (an ASCII fallback name for older clients)."""
    fallback = stem.encode("ascii", "replace").decode("ascii").replace("?", "_")
    disposition = f"attachment; filename=\"{fallback}.zip\"; filename*=UTF-8''{quote(stem)}.zip"
    return web.Response(
        body=body, content_type=ZIP_MEDIA_TYPE, headers={"Content-Disposition": disposition}
    )
