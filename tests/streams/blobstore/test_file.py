"""The `file://` blob store: content-addressed, idempotent, confined to its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrflux.errors import FetchFailed, TooLarge
from streams.blobstore import BlobStoreError, FileBlobStore
from streams.blobstore.base import blob_key, safe_name


async def test_put_then_get_returns_the_same_bytes(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    url = await store.put(b"hello blob", "report.pdf")
    assert url.startswith("file://")
    assert url.endswith("/report.pdf")
    assert await store.get(url, max_bytes=100) == b"hello blob"


async def test_same_bytes_and_name_give_the_same_url(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    first = await store.put(b"abc", "a.pdf")
    again = await store.put(b"abc", "a.pdf")
    other = await store.put(b"abd", "a.pdf")
    assert first == again
    assert other != first
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["a.pdf", "a.pdf"]


async def test_names_are_made_safe(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    url = await store.put(b"x", "../../etc/pass wd")
    assert store.path_of(url).is_relative_to(tmp_path.resolve())
    assert safe_name("") == "blob"
    assert safe_name("C:\\docs\\My File (1).pdf") == "My_File_1_.pdf"
    assert blob_key(b"x", "a/b.pdf").endswith("/b.pdf")


async def test_too_large_and_missing_blobs(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    url = await store.put(b"0123456789", "ten")
    assert await store.get(url, max_bytes=10) == b"0123456789"
    with pytest.raises(TooLarge):
        await store.get(url, max_bytes=9)
    with pytest.raises(FetchFailed, match="no such blob"):
        await store.get((tmp_path / "absent").as_uri(), max_bytes=10)


async def test_references_outside_the_folder_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    store = FileBlobStore(root)
    with pytest.raises(FetchFailed, match="outside the blob folder"):
        await store.get(outside.as_uri(), max_bytes=100)
    with pytest.raises(FetchFailed, match="outside the blob folder"):
        await store.get(f"{root.as_uri()}/../secret.txt", max_bytes=100)
    with pytest.raises(FetchFailed, match="another host"):
        await store.get("file://elsewhere/etc/hosts", max_bytes=100)
    with pytest.raises(FetchFailed, match="scheme"):
        await store.get("s3://bucket/key", max_bytes=100)


async def test_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    store = FileBlobStore(blocker)
    with pytest.raises(BlobStoreError):
        await store.put(b"x", "x")
