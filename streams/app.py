"""The stream processor's wiring: for each role a consumer group on its input topic, a runner
and the handler that does the role's work.

    role       input topic            group                  records in hand
    split      <prefix>.documents     <prefix>.split         1 (documents in order)
    recognize  <prefix>.pages         <prefix>.recognize     OCRFLUX_RECOGNIZE_CONCURRENCY
    assemble   <prefix>.page-results  <prefix>.assemble      1, state in <prefix>.assembly-state

Split and recognize also read all of `<prefix>.cancels` (outside any group; streams/cancels.py)
to stop work on cancelled documents, and split reads `<prefix>.results` the same way to answer
a new submission of a finished document without recognizing it (streams/finished.py).
Recognize and assemble read single requests back from `<prefix>.documents` by position (the
text layer of a failed page, figures; streams/submitted.py).

Each role has its own consumer group, so workers that run different roles never take each
other's partitions, and every worker that recognizes shares the pages. Records are raw bytes,
decoded inside the handlers: a record that does not parse becomes a dlq record (and, where its
key names a document, a failed result) instead of a crashed worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord

from streams.assemble_agent import AssembleHandler
from streams.assembly import Assembler, decode_state
from streams.cancels import Cancels
from streams.engine_pool import EnginePool
from streams.figure_store import FigureStore
from streams.finished import FinishedDocuments
from streams.metrics import WorkerMetrics
from streams.model_gate import ModelGate
from streams.outbox import Blobs, Outbox
from streams.recognize import answer_crash as answer_recognize_crash
from streams.recognize import recognize_record
from streams.result_reader import DocumentReader, ResultReader
from streams.runtime.clients import Producer
from streams.runtime.runner import Handler, RoleRunner
from streams.runtime.table import ChangelogTable
from streams.settings import WorkerSettings
from streams.split_agent import SplitHandler
from streams.split_control import SplitControl
from streams.text_layers import TextLayers

_log = logging.getLogger(__name__)


def consumer_options(settings: WorkerSettings) -> dict[str, Any]:
    """Consumers fetch the largest record and tolerate slow records without leaving the group."""
    session_ms = int(settings.ocrflux_session_timeout_s * 1000)
    return {
        **settings.aiokafka_options(),
        "client_id": f"ocrflux-{settings.ocrflux_worker_id}",
        "max_partition_fetch_bytes": settings.kafka_message_max_bytes,
        "fetch_max_bytes": settings.kafka_message_max_bytes,
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(session_ms // 3, 100),
        "max_poll_interval_ms": int(settings.ocrflux_max_record_time_s * 1000),
        "rebalance_timeout_ms": int(settings.ocrflux_max_record_time_s * 1000),
    }


def _where(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


@dataclass
class Pipeline:
    """The parts of one worker; `run()` until `stop()`."""

    runners: list[RoleRunner]
    background: list[Any] = field(default_factory=list)  # coroutine factories run alongside
    closers: list[Any] = field(default_factory=list)  # coroutine factories run at the end

    async def run(self) -> None:
        tasks = [asyncio.create_task(r.run(), name=r.name) for r in self.runners]
        extra = [asyncio.create_task(make()) for make in self.background]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a runner that failed stops the worker with its error
        finally:
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in extra:
                task.cancel()
            await asyncio.gather(*extra, return_exceptions=True)
            for close in self.closers:
                await close()

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()

    def ready(self) -> bool:
        """Every role has been through its first partition assignment."""
        return all(runner.rebalanced for runner in self.runners)


def build_pipeline(
    settings: WorkerSettings,
    roles: Iterable[str],
    *,
    producer: Producer,
    engines: EnginePool,
    blobs: Blobs,
    metrics: WorkerMetrics,
) -> Pipeline:
    roles = set(roles)
    names = settings.topics
    prefix = settings.ocrflux_topic_prefix
    outbox = Outbox(producer, settings)
    gate = ModelGate()
    options = consumer_options(settings)
    runners: list[RoleRunner] = []
    background: list[Any] = []
    closers: list[Any] = [gate.aclose]

    def runner(role: str, topic: str, handler: Handler, **extra: Any) -> RoleRunner:
        return RoleRunner(
            role,
            topic=topic,
            group_id=f"{prefix}.{role}",
            handler=handler,
            consumer_options=options,
            drain_timeout_s=settings.ocrflux_drain_timeout_s,
            **extra,
        )

    cancels: Cancels | None = None
    if roles & {"split", "recognize"}:
        cancels = Cancels(names.cancels, options)  # one view for both roles
        background.append(cancels.follow)
        closers.append(cancels.close)

    if "split" in roles:
        assert cancels is not None
        control = SplitControl(
            outbox,
            cancels,
            FinishedDocuments(names.results, options),
            ResultReader(names.results, options),
        )
        closers.append(control.close)
        splitter = SplitHandler(settings, outbox, blobs, metrics, control)

        async def split(record: ConsumerRecord[bytes, bytes]) -> None:
            await splitter.handle(
                record.key,
                record.value or b"",
                where=_where(record),
                submission=f"{record.partition}@{record.offset}",
            )

        async def split_crashed(record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
            await splitter.answer_crash(record.key, record.value or b"", exc)

        runners.append(
            runner(
                "split",
                names.documents,
                split,
                concurrency=settings.ocrflux_split_concurrency,
                on_error=split_crashed,
            )
        )

    if "recognize" in roles:
        requests = DocumentReader(names.documents, options)  # started by a first failed page
        text_layers = TextLayers(requests, blobs, settings.max_file_bytes)
        closers += [text_layers.close, requests.close]

        async def recognize(record: ConsumerRecord[bytes, bytes]) -> None:
            await recognize_record(
                record.key,
                record.value or b"",
                settings,
                engines,
                gate,
                outbox,
                metrics,
                cancels,
                text_layers,
            )

        async def recognize_crashed(record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
            await answer_recognize_crash(
                record.key, record.value or b"", exc, settings, outbox, metrics, text_layers
            )

        runners.append(
            runner(
                "recognize",
                names.pages,
                recognize,
                concurrency=settings.ocrflux_recognize_concurrency,
                on_error=recognize_crashed,
                hold=lambda: gate.closed,  # Kafka keeps the pages while the model is away
            )
        )

    if "assemble" in roles:
        table = ChangelogTable(producer, names.assembly_state, decode_state, options)
        results = ResultReader(names.results, options)
        documents = DocumentReader(names.documents, options)
        closers += [results.close, documents.close]
        figures = FigureStore(documents, blobs, settings.max_file_bytes)
        handler = AssembleHandler(
            settings,
            Assembler(table),
            table,
            outbox,
            engines,
            blobs,
            metrics,
            results,
            gate,
            figures,
        )

        async def restore(partitions: set[int]) -> None:
            await table.restore(partitions)

        async def drop(partitions: set[int]) -> None:
            table.drop(partitions)

        runners.append(
            runner(
                "assemble",
                names.page_results,
                handler.handle,
                on_assign=restore,
                on_revoke=drop,
                on_error=handler.answer_crash,
            )
        )

        async def sweep_forever() -> None:
            while True:
                await asyncio.sleep(settings.ocrflux_sweep_interval_s)  # the sweep interval
                try:
                    handler.sweep()
                except Exception:  # the next sweep tries again; say why this one failed
                    _log.exception("relaunching merge jobs failed")

        background.append(sweep_forever)

    return Pipeline(runners, background, closers)
