"""`s3://bucket/key` blobs on S3 or any S3-compatible server (MinIO, moto, rclone), via
aiobotocore.

Endpoint, region and credentials come from the constructor, or, when left out, from botocore's
usual chain: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), `AWS_DEFAULT_REGION`,
`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, `AWS_PROFILE` and
`~/.aws/`.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ocrflux.errors import FetchFailed, TooLarge
from streams.blobstore.base import BlobStore, BlobStoreError, blob_key, unsupported_scheme

_CHUNK_BYTES = 1024 * 1024
# A connection that takes longer than this is not coming; a read stalled this long is broken.
_CONNECT_TIMEOUT_S = 10.0
_READ_TIMEOUT_S = 60.0
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise unsupported_scheme(url, "the S3 blob store")
    key = parts.path.lstrip("/")
    if not parts.netloc or not key:
        raise FetchFailed(f"an S3 URL needs a bucket and a key: {url}")
    return parts.netloc, key


class S3BlobStore(BlobStore):
    """Blobs in `bucket` under `prefix`. Reads accept any `s3://` URL the credentials can read;
    without a bucket the store only reads."""

    schemes = ("s3",)

    def __init__(
        self,
        bucket: str | None = None,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client_args: dict[str, Any] = {
            key: value
            for key, value in {
                "endpoint_url": endpoint_url,
                "region_name": region_name,
                "aws_access_key_id": aws_access_key_id,
                "aws_secret_access_key": aws_secret_access_key,
                "aws_session_token": aws_session_token,
            }.items()
            if value is not None
        }
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, base_url: str, **client_args: Any) -> S3BlobStore:
        """A store that writes under `s3://bucket/prefix`."""
        parts = urlsplit(base_url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"expected s3://bucket[/prefix], not {base_url!r}")
        return cls(parts.netloc, parts.path, **client_args)

    async def _s3(self) -> Any:
        async with self._lock:
            if self._client is None:
                config = AioConfig(
                    connect_timeout=_CONNECT_TIMEOUT_S,
                    read_timeout=_READ_TIMEOUT_S,
                    retries={"max_attempts": 3, "mode": "standard"},
                )
                self._client = await self._stack.enter_async_context(
                    get_session().create_client("s3", config=config, **self._client_args)
                )
            return self._client

    async def put(self, data: bytes, name: str) -> str:
        if self.bucket is None:
            raise BlobStoreError("this S3 blob store has no bucket to write to")
        key = self.prefix + blob_key(data, name)
        client = await self._s3()
        try:
            await client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise BlobStoreError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        return f"s3://{self.bucket}/{key}"

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        bucket, key = parse_s3_url(url)
        client = await self._s3()
        try:
            response = await client.get_object(Bucket=bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            async with response["Body"] as body:
                if size > max_bytes:
                    raise TooLarge(f"{url} holds {size} bytes, more than the limit of {max_bytes}")
                return await _read_limited(body, max_bytes, url)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            what = "no such blob" if code in _MISSING_CODES else f"S3 refused ({code})"
            raise FetchFailed(f"{what}: {url}") from exc
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise FetchFailed(f"cannot read {url}: {exc}") from exc

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()


async def _read_limited(body: Any, max_bytes: int, url: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in body.iter_chunks(_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(f"{url} holds more than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
