"""What `connectors` and `streams.blobstore` export, and that each name is really there."""

from __future__ import annotations

import connectors
import streams.blobstore


def test_connectors_exports() -> None:
    assert sorted(connectors.__all__) == [
        "KafkaClientError",
        "KafkaSettings",
        "OcrfluxClient",
        "TopicNames",
        "ensure_topics",
    ]
    for name in connectors.__all__:
        assert getattr(connectors, name) is not None


def test_blobstore_exports() -> None:
    assert sorted(streams.blobstore.__all__) == [
        "BlobFetcher",
        "BlobReader",
        "BlobSettings",
        "BlobStore",
        "BlobStoreError",
        "FileBlobStore",
        "GuardedHttp",
        "HttpFetcher",
        "S3BlobStore",
        "UrlPolicy",
        "UrlRefused",
        "default_blob_dir",
        "fetch",
        "open_blob_store",
    ]
    for name in streams.blobstore.__all__:
        assert getattr(streams.blobstore, name) is not None
