"""The new stream benchmarks end to end in their quick mode (`--quick`, under a minute each):
the stream pipeline and the direct driver convert the merge corpus into the expected documents
with exactly the model requests the documents need (each benchmark raises otherwise), and the
sections report them. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_documents, bench_timeline
from bench.harness import Broker
from tests.fixtures.kafka import KafkaEndpoint

pytestmark = pytest.mark.kafka


def test_stream_of_documents_quick(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    section = bench_documents.measure(Broker(kafka.bootstrap, kafka.version, None), tmp_path, True)
    assert section.body.count("| page 64, detect 56 |") == 2  # the pipeline and the driver
    assert "Quick mode" in section.body
    [(_, measured, _)] = section.goals
    assert "lower bound 1.50 s" in measured


def test_timeline_quick(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    section = bench_timeline.measure(Broker(kafka.bootstrap, kafka.version, None), tmp_path, True)
    assert "page 8, detect 7, table_merge 2 model calls: lower bound 1.00 s" in section.body
    rows = [line for line in section.body.splitlines() if line.startswith("| table merge")]
    assert [row.split(" | ")[0] for row in rows] == ["| table merge 5-6", "| table merge 4-5"]
    assert all(cell.strip() for row in rows for cell in row.strip("|").split("|"))
