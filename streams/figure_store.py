"""The stream processor's figures (`figures=crop`): once a document's result is assembled, its
figures are cropped from the document as it was submitted, stored in the blob store (claim
check: a page's figures never ride in a Kafka record) and listed in the result by reference.

The assembler keeps no document bytes: it reads the request back from the documents topic at
the position its pages name (`DocumentInfo.submission`), and fetches the bytes from the blob
store when the request only referred to them (`streams.submitted`). Nothing here fails a
document: a figure that cannot be cropped or stored is a `figure_unavailable` warning on the
result.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from ocrflux.errors import OcrfluxError
from ocrflux.figures import Crop, crop_figures, with_refs, without_figures
from schemas.records import DocumentInfo, ResultRecord
from schemas.results import ErrorInfo, Figure
from streams.outbox import Blobs
from streams.result_reader import DocumentReader
from streams.submitted import submitted_bytes

_log = logging.getLogger(__name__)


def _crop(
    data: bytes, figures: list[Figure], scale: float
) -> tuple[dict[int, Crop], list[ErrorInfo]]:
    from ocrflux.render import open_document  # PyMuPDF only in workers that crop

    with open_document(data) as document:
        return crop_figures(document, figures, scale)


class FigureStore:
    def __init__(self, documents: DocumentReader, blobs: Blobs, max_bytes: int) -> None:
        self._documents = documents
        self._blobs = blobs
        self._max_bytes = max_bytes

    async def attach(self, result: ResultRecord, info: DocumentInfo) -> ResultRecord:
        """`result` with its figures cropped, stored and referenced (`Figure.ref`)."""
        if not result.figures:
            return result
        try:
            crops, warnings = await self._crop(result, info)
            refs = {}
            for figure in result.figures:
                crop = crops.get(figure.number)
                if crop is not None:
                    refs[figure.number] = await self._blobs.put(
                        crop.png, f"figures/{result.doc_id}/{figure.name}"
                    )
        except OcrfluxError as exc:
            return without_figures(result, exc.message)
        except Exception as exc:  # a bug must cost the figures, not the document
            _log.exception("figures of %s", result.doc_id, extra={"doc_id": result.doc_id})
            return without_figures(result, f"{type(exc).__name__}: {exc}")
        stored = with_refs(result, crops, refs)
        return stored.model_copy(update={"warnings": [*stored.warnings, *warnings]})

    async def _crop(
        self, result: ResultRecord, info: DocumentInfo
    ) -> tuple[dict[int, Crop], list[ErrorInfo]]:
        data = await submitted_bytes(
            self._documents, self._blobs, info.submission, max_bytes=self._max_bytes
        )
        job = partial(_crop, data, list(result.figures), info.options.figure_zoom)
        return await asyncio.get_running_loop().run_in_executor(None, job)
