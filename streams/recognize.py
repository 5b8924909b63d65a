"""The recognize stage ("GPU consumer"): one page task in, one page result out."""

from __future__ import annotations

import logging

from ocrflux.engines.base import Engine
from ocrflux.render import RenderedPage
from schemas.records import PageDone, PageTask

_log = logging.getLogger(__name__)


async def recognize(task: PageTask, engine: Engine, worker: str) -> PageDone:
    """Recognize one page. Engines report model failures as fallback pages; they do not raise."""
    page = RenderedPage(
        index=task.page,
        png=task.png,
        width=task.width,
        height=task.height,
        text_layer=task.text_layer,
    )
    result = await engine.recognize_page(page, max_attempts=task.info.options.max_page_retries)
    info = task.info.model_copy(update={"engine": engine.name, "model": engine.model})
    return PageDone(doc_id=task.doc_id, info=info, result=result, worker=worker)
