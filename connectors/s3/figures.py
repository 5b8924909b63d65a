"""The sink's figures (`figures=crop`): the PNGs a result refers to, as objects beside its
document output, and the result linked to them.

    <out-prefix>/<key>.md                              ... ![Figure 1, page 2](<LINK>) ...
    <out-prefix>/<key>_figures/figure-001-page-2.png   the PNG

`LINK` is `<name>_figures/figure-001-page-2.png`, `<name>` the key's last part: links are
relative to the Markdown (and to the `.json`, whose `figures[].ref` say the same).

The stream processor lists each figure with a blob-store URL (`Figure.ref`); the sink fetches
it with its blob fetcher. A figure that cannot be fetched is a `figure_unavailable` warning
added to the result, its link stays, and the document is written all the same.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

from ocrflux.figures import FIGURE_MAX_BYTES, figure_files, figure_pngs, figures_folder
from schemas.records import ResultRecord
from schemas.results import ErrorInfo
from streams.blobstore import BlobFetcher

MEDIA_TYPE = "image/png"


@dataclass(frozen=True)
class FigureObjects:
    """What a result's figures become in the bucket."""

    result: ResultRecord  # linked to the objects below (or unchanged: no figures)
    objects: dict[str, bytes] = field(default_factory=dict)  # key -> PNG
    missing: list[ErrorInfo] = field(default_factory=list)  # figures that could not be had


async def figure_objects(result: ResultRecord, base: str, fetcher: BlobFetcher) -> FigureObjects:
    """The objects of `result`'s figures beside `<base>.<suffix>`, and the result linked to
    them. Only completed and partial results have a document, so only they get figures."""
    if not result.figures or result.status not in ("completed", "partial"):
        return FigureObjects(result)

    async def fetch(url: str) -> bytes:
        return await fetcher.fetch(url, max_bytes=FIGURE_MAX_BYTES)

    pngs, missing = await figure_pngs(result, fetch)
    folder, stem = posixpath.split(base)
    linked, files = figure_files(result, stem, pngs)
    assert isinstance(linked, ResultRecord)  # model_copy keeps the record's class
    if missing:
        linked = linked.model_copy(update={"warnings": [*linked.warnings, *missing]})
    objects = {posixpath.join(folder, path): png for path, png in files.items()}
    return FigureObjects(linked, objects, missing)


def written_figure_keys(existing_json: bytes | None, base: str) -> set[str]:
    """The figure objects an earlier write of `<base>.json` linked (its `figures[].ref`,
    relative to it), so that figures the new result no longer has can be removed."""
    if existing_json is None:
        return set()
    try:
        figures = json.loads(existing_json).get("figures") or []
    except (json.JSONDecodeError, AttributeError):
        return set()
    folder, stem = posixpath.split(base)
    inside = figures_folder(stem) + "/"
    refs = (f.get("ref") for f in figures if isinstance(f, dict))
    return {
        posixpath.join(folder, ref)
        for ref in refs
        if isinstance(ref, str) and ref.startswith(inside) and "/" not in ref[len(inside) :]
    }
