"""S3 event messages as SQS delivers them (parsing without servers; receiving on moto)."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.s3.discovery_sqs import SqsDiscovery, parse_message
from connectors.s3.metrics import SourceMetrics
from tests.connectors.fixtures import S3Endpoint
from tests.connectors.s3.fixtures import boto_client


def _event(bucket: str, key: str, etag: str = "abc", name: str = "ObjectCreated:Put") -> dict:
    return {
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 12, "eTag": etag}},
    }


def test_created_objects_with_url_encoded_keys() -> None:
    body = json.dumps({"Records": [_event("b", "in%2Fa+b%2Bc.pdf"), _event("other", "x.pdf")]})
    parsed = parse_message(body, "b")
    assert parsed.s3_event
    [obj] = parsed.objects
    assert (obj.bucket, obj.key, obj.etag, obj.size) == ("b", "in/a b+c.pdf", "abc", 12)


def test_removals_test_events_and_sns_envelopes() -> None:
    removed = json.dumps({"Records": [_event("b", "x.pdf", name="ObjectRemoved:Delete")]})
    assert parse_message(removed, "b").objects == []
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    assert not parse_message(test_event, "b").s3_event
    inner = json.dumps({"Records": [_event("b", "y.pdf", '"quoted"')]})
    envelope = json.dumps({"Type": "Notification", "Message": inner})
    [obj] = parse_message(envelope, "b").objects
    assert (obj.key, obj.etag) == ("y.pdf", "quoted")


def test_a_body_that_is_not_json() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_message("<xml/>", "b")


async def test_messages_are_deleted_only_once_acked(
    moto_s3: S3Endpoint, s3_events: tuple[str, str], aws_isolation: dict[str, str]
) -> None:
    bucket, queue_url = s3_events
    s3, sqs = boto_client(moto_s3), boto_client(moto_s3, "sqs")
    s3.put_object(Bucket=bucket, Key="a.pdf", Body=b"%PDF-1.4 a")
    s3.put_object(Bucket=bucket, Key="b.pdf", Body=b"%PDF-1.4 b")
    stop = asyncio.Event()
    discovery = SqsDiscovery(
        moto_s3.client_args(),
        queue_url,
        bucket,
        wait_s=1,
        visibility_timeout_s=1,
        stop=stop,
        metrics=SourceMetrics(),
    )
    seen: dict[str, int] = {}
    try:
        batches = discovery.batches()
        while len(seen) < 2:
            batch = await anext(batches)
            for index, obj in enumerate(batch.objects):
                seen[obj.key] = seen.get(obj.key, 0) + 1
                # Acknowledge a.pdf only: b.pdf's message must come back.
                await batch.ack({index} if obj.key == "a.pdf" else set())
            if not batch.objects:
                await batch.ack(set())  # the test event: handled
        while seen["b.pdf"] < 2:
            batch = await anext(batches)
            for obj in batch.objects:
                seen[obj.key] += 1
            await batch.ack(set(range(len(batch.objects))))
        assert seen == {"a.pdf": 1, "b.pdf": 2}
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
        stop.set()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(batches), 5)  # a stop ends the long poll at once
    finally:
        await batches.aclose()
        await discovery.close()
