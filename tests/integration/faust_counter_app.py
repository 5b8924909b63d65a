"""A minimal faust app for the foundation tests: topic `<prefix>.in` -> count per key in a
changelog-backed table -> topic `<prefix>.out`.

Run as a worker process: `python -m tests.integration.faust_counter_app worker`, configured by
FAUST_APP_ID, KAFKA_BOOTSTRAP_SERVERS, TOPIC_PREFIX and FAUST_DATADIR.
"""

from __future__ import annotations

import os

import faust

prefix = os.environ["TOPIC_PREFIX"]
app = faust.App(
    os.environ["FAUST_APP_ID"],
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    store="memory://",  # state lives only in the changelog topic: recovery must come from it
    datadir=os.environ["FAUST_DATADIR"],
    topic_partitions=1,
    web_enabled=False,
)
source = app.topic(f"{prefix}.in", key_type=str, value_serializer="json")
sink = app.topic(f"{prefix}.out", key_type=str, value_serializer="json")
counts = app.Table("counts", default=int, partitions=1)


@app.agent(source)
async def count(stream: faust.StreamT) -> None:
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value={"key": key, "count": counts[key], "value": value})


if __name__ == "__main__":
    app.main()
