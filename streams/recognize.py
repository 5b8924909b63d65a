"""The recognize stage ("GPU consumer"): one page task in, one page result out, never lost.

Split renders pages for the `vllm` engine without their text layer (`PageTask.
text_layer_deferred`). A fallback page (the model failed it after its attempts, or its
recognition raised) then takes its text layer from the document as it was submitted, read back
from the documents topic (`TextLayers`); a `local` engine, which reads every page from its text
layer, takes it before recognizing. When the request cannot be read back the page keeps no text,
as an image page would, and its error; it is never lost.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial

from pydantic import ValidationError

from ocrflux.engines.base import Engine, fallback_page, with_text_layer
from ocrflux.errors import OcrfluxError
from ocrflux.pages import RenderedPage, TableMode, defer_text_layer, text_layer_tables
from ocrflux.tasks import TaskOutcome
from schemas.records import PageDone, PageTask, decode
from schemas.results import ErrorInfo
from streams.cancels import Cancels, cancelled_from_info
from streams.engine_pool import EnginePool
from streams.metrics import WorkerMetrics
from streams.model_gate import ModelGate
from streams.outbox import Outbox
from streams.settings import WorkerSettings
from streams.text_layers import TextLayers

_log = logging.getLogger(__name__)


async def recognize(
    task: PageTask, engine: Engine, worker: str, text_layers: TextLayers | None = None
) -> PageDone:
    """Recognize one page. Engines report model failures as fallback pages; they do not raise."""
    page = _rendered(task)
    vllm = engine.name == "vllm"
    tables = text_layer_tables(engine.name, vllm_configured=vllm)
    if page.text_layer_deferred and not defer_text_layer(engine.name, vllm_configured=vllm):
        # Split for vllm, recognized by an engine that reads text layers (mixed deployment).
        text = await _deferred_text_layer(task, tables, text_layers)
        page = dataclasses.replace(page, text_layer=text, text_layer_deferred=False)
    result = await engine.recognize_page(page, max_attempts=task.info.options.max_page_retries)
    if result.fallback and page.text_layer_deferred:
        result = with_text_layer(result, await _deferred_text_layer(task, tables, text_layers))
    info = task.info.model_copy(update={"engine": engine.name, "model": engine.model})
    return PageDone(doc_id=task.doc_id, info=info, result=result, worker=worker)


async def _deferred_text_layer(
    task: PageTask, tables: TableMode, text_layers: TextLayers | None
) -> str | None:
    """The text layer split left out of `task`; None (no text) when it cannot be had."""
    where = {"doc_id": task.doc_id, "page": task.page}
    if text_layers is None:
        _log.warning(
            "page %s/%s: no documents reader to take its text layer from",
            task.doc_id,
            task.page,
            extra=where,
        )
        return None
    try:
        return await text_layers.take(task, tables)
    except OcrfluxError as exc:
        message = exc.message
    except Exception as exc:  # a bug or a Kafka error must cost the page's text, not the page
        _log.exception(
            "page %s/%s: reading its text layer raised", task.doc_id, task.page, extra=where
        )
        message = f"{type(exc).__name__}: {exc}"
    _log.warning(
        "page %s/%s failed and its text layer cannot be read from its request: %s",
        task.doc_id,
        task.page,
        message,
        extra=where,
    )
    return None


async def recognize_record(
    key: bytes | None,
    value: bytes,
    settings: WorkerSettings,
    engines: EnginePool,
    gate: ModelGate,
    outbox: Outbox,
    metrics: WorkerMetrics,
    cancels: Cancels | None = None,
    text_layers: TextLayers | None = None,
) -> None:
    """One page task in, its page result out. While the model is unreachable the page waits
    (`ModelGate`); any other exception is the runner's to answer (`answer_crash`). A page of a
    cancelled document is not recognized: the assembler is told instead. `text_layers` reads
    the text layers split left out (None: such a failed page keeps no text)."""
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
    worker = settings.ocrflux_worker_id
    work = gate.run(engine, partial(recognize, task, engine, worker, text_layers))
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
    text_layers: TextLayers | None = None,
) -> None:
    """A page whose recognition raised (a bug, a broken engine) must not be lost: it is
    answered with a failed page (with its text layer, as a fallback page), and the task goes
    to the dlq."""
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
    done = await _failed_page(task, code, str(exc), settings, text_layers)
    metrics.page_done(done)
    await outbox.send(names.page_results, task.doc_id, done)


def _page_task(value: bytes) -> PageTask:
    task = decode(value)
    if not isinstance(task, PageTask):
        raise ValueError(f"expected a page_task, got {type(task).__name__}")
    return task


def _rendered(task: PageTask) -> RenderedPage:
    return RenderedPage(
        index=task.page,
        png=task.png,
        width=task.width,
        height=task.height,
        text_layer=task.text_layer,
        text_layer_deferred=task.text_layer_deferred,
    )


async def _failed_page(
    task: PageTask,
    code: str,
    message: str,
    settings: WorkerSettings,
    text_layers: TextLayers | None,
) -> PageDone:
    error = ErrorInfo(code=code, message=message[:500])
    result = fallback_page(_rendered(task), TaskOutcome(error=error))
    if task.text_layer_deferred:
        engine = task.info.options.engine or settings.ocrflux_engine
        tables = text_layer_tables(engine, vllm_configured=bool(settings.vllm_url))
        result = with_text_layer(result, await _deferred_text_layer(task, tables, text_layers))
    return PageDone(
        doc_id=task.doc_id, info=task.info, result=result, worker=settings.ocrflux_worker_id
    )
