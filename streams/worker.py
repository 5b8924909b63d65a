"""`ocrflux worker`: one process running some or all of the stream processor's roles."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import faust
import mode

from connectors.blobstore import BlobFetcher, BlobStore, open_blob_store
from connectors.kafka_config import ensure_topics
from deploy.kafka_broker import cache_home
from streams.app import create_app
from streams.engine_pool import EnginePool
from streams.metrics import WorkerMetrics
from streams.settings import ROLES, WorkerSettings

_log = logging.getLogger(__name__)


class WorkerBlobs(mode.Service):
    """Reads any reference a record carries; writes oversized results to the configured store."""

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__()
        self._store: BlobStore = open_blob_store(settings=settings)
        self._fetcher = BlobFetcher(settings, stores=(self._store,))

    async def fetch(self, url: str, *, max_bytes: int, expected_sha256: str | None = None) -> bytes:
        return await self._fetcher.fetch(url, max_bytes=max_bytes, expected_sha256=expected_sha256)

    async def put(self, data: bytes, name: str) -> str:
        return await self._store.put(data, name)

    async def on_stop(self) -> None:
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


def build_worker(
    settings: WorkerSettings, roles: Sequence[str], loglevel: str = "info"
) -> faust.Worker:
    data_dir = Path(
        settings.ocrflux_data_dir or cache_home() / "workers" / settings.ocrflux_worker_id
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"ocrflux_data_dir": str(data_dir)})
    created = ensure_topics(settings)
    if created:
        _log.info("created topics %s", ", ".join(created))
    metrics = WorkerMetrics()
    engines = EnginePool(settings, open_default="recognize" in roles or "assemble" in roles)
    blobs = WorkerBlobs(settings)
    app = create_app(settings, roles, engines=engines, blobs=blobs, metrics=metrics)
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
    return faust.Worker(app, engines, blobs, loglevel=loglevel, redirect_stdouts=False)


def run_worker(settings: WorkerSettings, roles: Sequence[str], loglevel: str = "info") -> int:
    worker = build_worker(settings, roles, loglevel)
    _log.info(
        "worker %s running roles %s on %s",
        settings.ocrflux_worker_id,
        ",".join(roles),
        settings.kafka_bootstrap_servers,
    )
    worker.execute_from_commandline()  # returns when the worker stops (SIGTERM, SIGINT)
    return 0
