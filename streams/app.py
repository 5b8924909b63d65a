"""The faust app "ocrflux": topics, the assembler's table and the three agents.

`create_app` wires one app for the roles a worker runs. Workers with different roles share one
consumer group: faust assigns a topic's partitions among the members that subscribe to it, so
two workers that both recognize share the pages while only the assembling worker owns the
page-results partitions and the table.

Records travel as raw bytes and are decoded inside the agents, so a record that does not parse
becomes a dlq record (and, where its key names a document, a failed result) instead of a
crashed agent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import cast

import faust
from faust.tables.table import Table

from streams import codec
from streams.assemble_agent import AssembleHandler
from streams.assembly import Assembler
from streams.engine_pool import EnginePool
from streams.metrics import WorkerMetrics
from streams.outbox import Blobs, Outbox
from streams.recognize import recognize_record
from streams.settings import WorkerSettings
from streams.split_agent import SplitHandler

_log = logging.getLogger(__name__)

#: Records a stream buffers per partition. Page records are large (a PNG each), so the
#: default of thousands would hold hundreds of MB; a few per partition keep consumers busy.
STREAM_BUFFER_MAXSIZE = 16


def create_app(
    settings: WorkerSettings,
    roles: Iterable[str],
    *,
    engines: EnginePool,
    blobs: Blobs,
    metrics: WorkerMetrics,
) -> faust.App:
    roles = set(roles)
    codec.register()
    app = faust.App(
        settings.ocrflux_topic_prefix,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",  # the changelog topic is the state; recovery replays it
        datadir=settings.ocrflux_data_dir,
        topic_partitions=settings.kafka_topic_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        producer_max_request_size=settings.kafka_message_max_bytes,
        consumer_max_fetch_size=settings.kafka_message_max_bytes,
        stream_buffer_maxsize=STREAM_BUFFER_MAXSIZE,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.ocrflux_session_timeout_s,
    )
    outbox = Outbox(app, settings)
    names = settings.topics

    if "split" in roles:
        splitter = SplitHandler(settings, outbox, blobs, metrics)

        @app.agent(outbox.topic(names.documents), name="split")
        async def split_agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await splitter.handle(event.key, event.value)

    if "recognize" in roles:

        @app.agent(
            outbox.topic(names.pages),
            name="recognize",
            concurrency=settings.ocrflux_recognize_concurrency,
        )
        async def recognize_agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await recognize_record(event.key, event.value, settings, engines, outbox, metrics)

    if "assemble" in roles:
        table = cast(
            Table,
            app.Table(
                "assembly", default=None, partitions=settings.kafka_topic_partitions, key_type=str
            ),
        )
        # faust takes a table's serializers from faust Records only; ours are pydantic models.
        # The changelog topic, already made with the defaults, is remade so that recovery
        # decodes with our codec too.
        table.key_serializer, table.value_serializer = "json", codec.NAME
        table.changelog_topic = table._new_changelog_topic()
        assembler = AssembleHandler(
            app, settings, Assembler(table), outbox, engines, blobs, metrics
        )

        @app.agent(outbox.topic(names.page_results), name="assemble")
        async def assemble_agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await assembler.handle(event)

        @app.timer(settings.ocrflux_sweep_interval_s, name="relaunch-lost-merge-jobs")
        async def sweep() -> None:
            assembler.sweep()

    return app
