"""`ocrflux worker`: one process running some or all of the stream processor's roles.

SIGTERM or SIGINT stops it after the records in hand (exit status 0); a second signal stops it
at once (130), as a crash would: the records in hand are not committed, so the partitions' next
owner redoes them."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence

from ocrflux import collector
from ocrflux.exit_codes import EXIT_INTERRUPTED, EXIT_OK
from ocrflux.render_pool import shared_pool
from streams.app import Pipeline, build_pipeline
from streams.blobstore import BlobFetcher, BlobStore, open_blob_store
from streams.engine_pool import EnginePool
from streams.kafka import KafkaClientError, ensure_topics, partition_counts
from streams.metrics import WorkerMetrics
from streams.runtime.clients import Producer
from streams.runtime.heap import return_large_buffers
from streams.runtime.log_limit import limit_repeats
from streams.settings import ROLES, WorkerSettings

_log = logging.getLogger(__name__)

#: How often the worker checks whether every role has had its first assignment.
_READY_POLL_S = 0.2


class WorkerBlobs:
    """Reads any reference a record carries; writes oversized results to the configured store."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._store: BlobStore = open_blob_store(settings=settings)
        self._fetcher = BlobFetcher(settings, stores=(self._store,))

    async def fetch(self, url: str, *, max_bytes: int, expected_sha256: str | None = None) -> bytes:
        return await self._fetcher.fetch(url, max_bytes=max_bytes, expected_sha256=expected_sha256)

    async def put(self, data: bytes, name: str) -> str:
        return await self._store.put(data, name)

    async def aclose(self) -> None:
        await self._fetcher.close()
        await self._store.close()


def parse_roles(text: str) -> list[str]:
    roles = [role.strip() for role in text.split(",") if role.strip()]
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise ValueError(
            f"roles must be a comma-separated subset of {','.join(ROLES)}; got {text!r}"
        )
    return roles


def _check_partitions(settings: WorkerSettings) -> None:
    names = settings.topics
    counts = partition_counts(settings, [names.page_results, names.assembly_state])
    if len(set(counts.values())) != 1:
        raise KafkaClientError(
            f"{names.page_results} and {names.assembly_state} must have the same number of "
            f"partitions (the assembler's state follows its input); found {counts}"
        )


async def _when_ready(pipeline: Pipeline, settings: WorkerSettings, roles: Sequence[str]) -> None:
    """Once every role has its partitions: settle the collector (`ocrflux.collector`) and say
    that the worker is ready."""
    while not pipeline.ready():
        await asyncio.sleep(_READY_POLL_S)  # poll interval until every role is assigned
    collector.settle()
    _log.info(
        "worker %s ready: roles %s on %s",
        settings.ocrflux_worker_id,
        ",".join(roles),
        settings.kafka_bootstrap_servers,
    )


async def serve(settings: WorkerSettings, roles: Sequence[str]) -> None:
    """Run the roles until SIGTERM or SIGINT, then finish the records in hand and commit."""
    created = ensure_topics(settings)
    if created:
        _log.info("created topics %s", ", ".join(created))
    if "assemble" in roles:
        _check_partitions(settings)
    metrics = WorkerMetrics()
    engines = EnginePool(settings)
    blobs = WorkerBlobs(settings)
    producer = Producer(settings, client_id=f"ocrflux-{settings.ocrflux_worker_id}")
    await producer.start()
    try:
        if "split" in roles:
            # The split role's render processes (`SplitHandler`): started before work comes,
            # they live as long as this process (other workers in it may share them).
            await shared_pool(settings.render_processes).start()
        if "recognize" in roles or "assemble" in roles:
            await engines.get(None)  # open (and log) the default engine before taking work
        metrics.track_inflight(
            lambda: sum(
                sum(engine.inflight().values())
                for engine in engines.engines()
                if hasattr(engine, "inflight")
            )
        )
        if settings.ocrflux_metrics_port is not None:
            port = metrics.serve(settings.ocrflux_metrics_host, settings.ocrflux_metrics_port)
            _log.info("metrics on http://%s:%d/metrics", settings.ocrflux_metrics_host, port)
        pipeline = build_pipeline(
            settings, roles, producer=producer, engines=engines, blobs=blobs, metrics=metrics
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _on_signal(pipeline), signum)
        announce = asyncio.create_task(_when_ready(pipeline, settings, roles))
        try:
            await pipeline.run()
        finally:
            announce.cancel()
        _log.info("worker %s stopped", settings.ocrflux_worker_id)
    finally:
        await producer.stop()
        await engines.aclose()
        await blobs.aclose()


def _on_signal(pipeline: Pipeline) -> Callable[[int], None]:
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        name = signal.Signals(signum).name
        if signals > 1:
            _log.warning("second %s: stopping now", name)
            logging.shutdown()  # flush the log; nothing else may wait (the drain is what is cut)
            os._exit(EXIT_INTERRUPTED)
        _log.info("%s: finishing the records in hand, then stopping", name)
        pipeline.stop()

    return on_signal


def run_worker(settings: WorkerSettings, roles: Sequence[str]) -> int:
    limit_repeats()  # a broker outage must not bury the log in connection errors
    if "split" not in roles:
        # Split allocates multi-MB page bitmaps over and over: glibc's raised threshold keeps
        # them in the heap, warm, where fresh mappings would cost their page faults every time.
        return_large_buffers()
    asyncio.run(serve(settings, roles))
    return EXIT_OK
