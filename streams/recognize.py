"""The recognize stage ("GPU consumer"): one page task in, one page result out, never lost."""

from __future__ import annotations

import logging
from functools import partial

from pydantic import ValidationError

from ocrflux.engines.base import Engine, fallback_page
from ocrflux.errors import OcrfluxError
from ocrflux.render import RenderedPage
from ocrflux.tasks import TaskOutcome
from schemas.records import PageDone, PageTask, decode
from schemas.results import ErrorInfo
from streams.cancels import Cancels, cancelled_from_info
from streams.engine_pool import EnginePool
from streams.metrics import WorkerMetrics
from streams.model_gate import ModelGate
from streams.outbox import Outbox
from streams.settings import WorkerSettings

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


async def recognize_record(
    key: bytes | None,
    value: bytes,
    settings: WorkerSettings,
    engines: EnginePool,
    gate: ModelGate,
    outbox: Outbox,
    metrics: WorkerMetrics,
    cancels: Cancels | None = None,
) -> None:
    """One page task in, its page result out. While the model is unreachable the page waits
    (`ModelGate`); any other exception is the runner's to answer (`answer_crash`). A page of a
    cancelled document is not recognized: the assembler is told instead."""
    names = outbox.names
    try:
        task = _page_task(value)
    except (ValidationError, ValueError) as exc:
        await outbox.dlq(
            topic=names.pages,
            key=key,
            value=value,
            stage="recognize",
            code="invalid_record",
            message=str(exc)[:500],
            exc=exc,
        )
        metrics.errors.labels("recognize", "invalid_record").inc()
        return
    engine = await engines.get(task.info.options.engine)
    work = gate.run(engine, partial(recognize, task, engine, settings.ocrflux_worker_id))
    if cancels is None:
        done: PageDone | None = await work
    else:
        done = await cancels.unless_cancelled(task.doc_id, task.info.submitted_at, work)
    if done is None:  # cancelled before or while the model was asked
        cancelled = cancelled_from_info(task.doc_id, task.info, "recognize")
        await outbox.send(names.page_results, task.doc_id, cancelled)
        return
    _log.debug(
        "page %s/%s recognized: %s after %d attempt(s)",
        task.doc_id,
        task.page,
        done.result.source,
        done.result.attempts,
        extra={"doc_id": task.doc_id, "page": task.page},
    )
    metrics.page_done(done)
    await outbox.send(names.page_results, task.doc_id, done)


async def answer_crash(
    key: bytes | None,
    value: bytes,
    exc: Exception,
    settings: WorkerSettings,
    outbox: Outbox,
    metrics: WorkerMetrics,
) -> None:
    """A page whose recognition raised (a bug, a broken engine) must not be lost: it is
    answered with a failed page, and the task goes to the dlq."""
    names = outbox.names
    task = _page_task(value)  # it decoded before the handler raised
    _log.error(
        "page %s/%s failed unexpectedly",
        task.doc_id,
        task.page,
        exc_info=exc,
        extra={"doc_id": task.doc_id, "page": task.page},
    )
    code = exc.code if isinstance(exc, OcrfluxError) else "internal"
    await outbox.dlq(
        topic=names.pages,
        key=key,
        value=value,
        stage="recognize",
        code=code,
        message=str(exc)[:500],
        exc=exc,
        doc_id=task.doc_id,
    )
    done = _failed_page(task, code, str(exc), settings.ocrflux_worker_id)
    metrics.page_done(done)
    await outbox.send(names.page_results, task.doc_id, done)


def _page_task(value: bytes) -> PageTask:
    task = decode(value)
    if not isinstance(task, PageTask):
        raise ValueError(f"expected a page_task, got {type(task).__name__}")
    return task


def _failed_page(task: PageTask, code: str, message: str, worker: str) -> PageDone:
    page = RenderedPage(task.page, task.png, task.width, task.height, task.text_layer)
    result = fallback_page(page, TaskOutcome(error=ErrorInfo(code=code, message=message[:500])))
    return PageDone(doc_id=task.doc_id, info=task.info, result=result, worker=worker)
