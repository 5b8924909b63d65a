"""Counting the work: through Kafka the model sees exactly the requests the direct driver makes
for the same documents (pages, merge detections, table merges), however many assemblers share
them. A merge job stays in flight until its answer is applied, so none is asked twice."""

from __future__ import annotations

import asyncio

import pytest

from tests.scenarios import generated_cases, register
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka

CASES = generated_cases(20, seed=31)


def _requests_by_task(pipeline: Pipeline) -> dict[str, int]:
    by_task = pipeline.server.stats()["by_task"]
    return {task: sum(counts.values()) for task, counts in by_task.items()}


def test_the_model_sees_exactly_the_requests_the_direct_driver_makes(pipeline: Pipeline) -> None:
    for case in CASES:
        register(pipeline.server, case)
    for case in CASES:
        asyncio.run(pipeline.direct(case))
    needed = _requests_by_task(pipeline)
    assert needed.get("detect", 0) > 20 and needed.get("table_merge", 0) > 0, needed

    pipeline.server.reset("stats")
    # Two workers: the assemblers split the page-results partitions, and merge jobs run while
    # other documents' pages are still being recognized.
    pipeline.server.configure(service_time=0.01, capacity=16)
    pipeline.start_worker("first", OCRFLUX_SWEEP_INTERVAL_S="0.5")
    pipeline.start_worker("second", OCRFLUX_SWEEP_INTERVAL_S="0.5")
    ids = [pipeline.client.submit(case.data, filename=case.name) for case in CASES]
    results = pipeline.results(ids)
    assert {r.status for r in results.values()} == {"completed"}
    assert _requests_by_task(pipeline) == needed
