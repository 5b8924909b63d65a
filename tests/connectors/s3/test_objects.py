"""The connector's S3 calls against both servers: moto, and rclone (real authentication, ETags
unquoted in listings, If-Match ignored)."""

from __future__ import annotations

import hashlib

import pytest

from connectors.s3.errors import AccessDenied, ObjectChanged, StoreUnavailable
from connectors.s3.objects import ObjectInfo, ObjectStore
from deploy.kafka_broker import free_port
from tests.connectors.fixtures import S3Endpoint
from tests.connectors.s3.fixtures import boto_client


@pytest.fixture(params=["moto", "rclone"])
def server(request: pytest.FixtureRequest, aws_isolation: dict[str, str]) -> tuple[S3Endpoint, str]:
    if request.param == "moto":
        return request.getfixturevalue("moto_s3"), request.getfixturevalue("s3_bucket")
    return request.getfixturevalue("rclone_s3"), request.getfixturevalue("rclone_bucket")


async def _listed(store: ObjectStore, bucket: str, prefix: str, page_size: int) -> list[list[str]]:
    return [
        [o.key for o in page]
        async for page in store.list_pages(bucket, prefix, page_size=page_size)
    ]


async def test_listing_pages_and_hashing_one_version(server: tuple[S3Endpoint, str]) -> None:
    endpoint, bucket = server
    s3 = boto_client(endpoint)
    for n in range(5):
        s3.put_object(Bucket=bucket, Key=f"in/{n}.pdf", Body=b"%PDF-1.4 " + bytes([n]) * 3000)
    s3.put_object(Bucket=bucket, Key="elsewhere.pdf", Body=b"x")
    store = ObjectStore(endpoint.client_args())
    try:
        pages = await _listed(store, bucket, "in/", page_size=2)
        assert [len(page) for page in pages] == [2, 2, 1]
        assert sorted(key for page in pages for key in page) == [f"in/{n}.pdf" for n in range(5)]
        [first, *_] = [o async for page in store.list_pages(bucket, "in/0") for o in page]
        data = b"%PDF-1.4 " + bytes([0]) * 3000
        assert first.etag == hashlib.md5(data).hexdigest() and first.size == len(data)

        digest = await store.digest(first)
        assert digest is not None
        assert digest.sha256 == hashlib.sha256(data).hexdigest()
        assert digest.size == len(data) and digest.head.startswith(b"%PDF-1.4")
        assert await store.digest(first, accept_type=lambda t: t == "image/png") is None

        s3.put_object(Bucket=bucket, Key="in/0.pdf", Body=b"%PDF-1.4 overwritten")
        with pytest.raises(ObjectChanged):
            await store.digest(first)  # the version we were told about is gone
        with pytest.raises(ObjectChanged):
            await store.digest(ObjectInfo(bucket, "in/absent.pdf", "abc", 1))
    finally:
        await store.close()


async def test_writes_only_when_the_bytes_differ(server: tuple[S3Endpoint, str]) -> None:
    endpoint, bucket = server
    store = ObjectStore(endpoint.client_args())
    try:
        assert await store.get_optional(bucket, "out/a.md") is None
        assert await store.put_if_changed(bucket, "out/a.md", b"# A\n", "text/markdown")
        assert not await store.put_if_changed(bucket, "out/a.md", b"# A\n", "text/markdown")
        assert await store.put_if_changed(bucket, "out/a.md", b"# B\n", "text/markdown")
        assert await store.get_optional(bucket, "out/a.md") == b"# B\n"
        await store.delete(bucket, "out/a.md")
        assert await store.get_optional(bucket, "out/a.md") is None
    finally:
        await store.close()


async def test_wrong_secret_is_access_denied(rclone_s3: S3Endpoint, rclone_bucket: str) -> None:
    args = {**rclone_s3.client_args(), "aws_secret_access_key": "wrong"}
    store = ObjectStore(args)
    try:
        with pytest.raises(AccessDenied, match=r"access denied \(SignatureDoesNotMatch"):
            await _listed(store, rclone_bucket, "", page_size=10)
        with pytest.raises(AccessDenied, match="check the credentials"):
            await store.put_if_changed(rclone_bucket, "k", b"x", "text/plain")
    finally:
        await store.close()


async def test_missing_bucket_and_dead_endpoint_are_unavailable(
    rclone_s3: S3Endpoint, aws_isolation: dict[str, str]
) -> None:
    store = ObjectStore(rclone_s3.client_args())
    dead = ObjectStore(
        {**rclone_s3.client_args(), "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    )
    try:
        with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
            await _listed(store, "no-such-bucket", "", page_size=10)
        with pytest.raises(StoreUnavailable, match="cannot list"):
            await _listed(dead, "bucket", "", page_size=10)
    finally:
        await store.close()
        await dead.close()
