"""`ocrflux cancel` as the user runs it: one cancel record per document on the cancels topic
(what the workers read; tests/streams/test_cancel.py follows it through them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.records import CancelRequest, decode
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import consume
from tests.connectors.test_cli_commands import _env, _run


@pytest.mark.kafka
def test_cancel_sends_one_record_per_document(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    done = _run(
        _env(tmp_path, kafka_settings), "cancel", "doc-a", "doc-b", "doc-a", "--reason", "x"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["doc-a", "doc-b"]
    records = [decode(m.value()) for m in consume(kafka_settings, kafka_settings.topics.cancels, 2)]
    assert all(isinstance(r, CancelRequest) and r.reason == "x" for r in records)
    assert sorted(r.doc_id for r in records) == ["doc-a", "doc-b"]  # type: ignore[attr-defined]


def test_cancel_needs_a_doc_id(tmp_path: Path) -> None:
    done = _run(_env(tmp_path, None), "cancel")
    assert done.returncode == 2 and "DOC_ID" in done.stderr
