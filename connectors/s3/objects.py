"""The S3 calls the connector makes, on aiobotocore, with errors translated into
`connectors.s3.errors`: list a prefix, read one object version while hashing it, and write an
object only when its bytes differ."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from connectors.s3.errors import AccessDenied, ObjectChanged, StoreUnavailable, TransientError

#: Objects hashed and compared in chunks of this size: memory stays flat for any object size.
CHUNK_BYTES = 1024 * 1024
#: Bytes kept from an object's start to tell its type by magic bytes (`ocrflux.sniff`).
HEAD_BYTES = 4096
# A connection that takes longer than this is not coming; a read stalled this long is broken.
_CONNECT_TIMEOUT_S = 10.0
_READ_TIMEOUT_S = 60.0

_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthFailure",
        "AllAccessDisabled",
        "403",
        "401",
    }
)
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound", "PreconditionFailed", "412"})
_HINT = (
    "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --access-key-id / "
    "--secret-access-key) and the bucket policy"
)


def normalize_etag(etag: str | None) -> str:
    """An ETag without quotes or weak marker: S3 servers differ in what they quote."""
    text = (etag or "").strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


@dataclass(frozen=True)
class ObjectInfo:
    """One object version as a listing or an event announces it."""

    bucket: str
    key: str
    etag: str
    size: int
    last_modified: datetime | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Digest:
    """What reading one object version once tells: its SHA-256, length, type and first bytes."""

    sha256: str
    size: int
    content_type: str | None
    head: bytes
    etag: str


def client_config() -> AioConfig:
    return AioConfig(
        connect_timeout=_CONNECT_TIMEOUT_S,
        read_timeout=_READ_TIMEOUT_S,
        retries={"max_attempts": 3, "mode": "standard"},
    )


def translate(exc: Exception, what: str, endpoint: str | None) -> TransientError:
    """A botocore / aiohttp error as the connector's error, with one readable message."""
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(error.get("Message", "") or "").strip()
        detail = f"{code}{': ' + message if message else ''}"
        if code in _DENIED_CODES or status in (401, 403):
            return AccessDenied(f"{what}{where}: access denied ({detail}); {_HINT}")
        if code in ("NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return StoreUnavailable(f"{what}{where}: {detail}")
        return StoreUnavailable(f"{what}{where}: S3 answered {status} ({detail})")
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(f"{what}{where}: no credentials found; {_HINT}")
    return StoreUnavailable(f"{what}{where}: {type(exc).__name__}: {exc}")


#: Library errors that mean "the store did not do it"; anything else is a bug and propagates.
LIBRARY_ERRORS: tuple[type[Exception], ...] = (
    ClientError,
    BotoCoreError,
    aiohttp.ClientError,
    TimeoutError,
)


class ObjectStore:
    """One S3 client, opened on first use and closed with the store."""

    def __init__(self, client_args: dict[str, Any]) -> None:
        self._client_args = client_args
        self.endpoint = client_args.get("endpoint_url")
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await self._stack.enter_async_context(
                    get_session().create_client("s3", config=client_config(), **self._client_args)
                )
            return self._client

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    async def list_pages(
        self, bucket: str, prefix: str, *, page_size: int | None = None
    ) -> AsyncIterator[list[ObjectInfo]]:
        """Every object under `prefix`, a page at a time (ListObjectsV2; the server's page size,
        1000 on AWS, unless `page_size` is given)."""
        token: str | None = None
        what = f"cannot list s3://{bucket}/{prefix}"
        while True:
            args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if page_size is not None:
                args["MaxKeys"] = page_size
            if token:
                args["ContinuationToken"] = token
            try:
                client = await self._s3()
                page = await client.list_objects_v2(**args)
            except LIBRARY_ERRORS as exc:
                raise translate(exc, what, self.endpoint) from exc
            yield [
                ObjectInfo(
                    bucket=bucket,
                    key=item["Key"],
                    etag=normalize_etag(item.get("ETag")),
                    size=int(item.get("Size") or 0),
                    last_modified=item.get("LastModified"),
                )
                for item in page.get("Contents", [])
            ]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def digest(
        self, obj: ObjectInfo, *, accept_type: Callable[[str | None], bool] | None = None
    ) -> Digest | None:
        """Read the version `obj.etag` of the object once, hashing it as it streams.

        `ObjectChanged` when the object is gone or holds another version (the ETag is checked
        in the request and again in the answer: not every server honours If-Match). None when
        `accept_type` refuses the object's Content-Type (nothing more is read). Without an
        `obj.etag` (an event that names none) the current version is read.
        """
        what = f"cannot read {obj.url}"
        condition = {"IfMatch": f'"{obj.etag}"'} if obj.etag else {}
        try:
            client = await self._s3()
            response = await client.get_object(Bucket=obj.bucket, Key=obj.key, **condition)
            async with response["Body"] as body:
                etag = normalize_etag(response.get("ETag")) or obj.etag
                if obj.etag and etag != obj.etag:
                    raise ObjectChanged(f"{obj.url} now holds version {etag}, not {obj.etag}")
                content_type = response.get("ContentType")
                if accept_type is not None and not accept_type(content_type):
                    return None
                sha = hashlib.sha256()
                head = b""
                size = 0
                async for chunk in body.iter_chunks(CHUNK_BYTES):
                    sha.update(chunk)
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                    size += len(chunk)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_OBJECT_CODES:
                raise ObjectChanged(f"{obj.url} version {obj.etag} is gone ({code})") from exc
            raise translate(exc, what, self.endpoint) from exc
        except LIBRARY_ERRORS as exc:
            raise translate(exc, what, self.endpoint) from exc
        return Digest(sha.hexdigest(), size, content_type, head, etag)

    async def get_optional(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        try:
            client = await self._s3()
            response = await client.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as body:
                return bytes(await body.read())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise translate(exc, f"cannot read s3://{bucket}/{key}", self.endpoint) from exc
        except LIBRARY_ERRORS as exc:
            raise translate(exc, f"cannot read s3://{bucket}/{key}", self.endpoint) from exc

    async def put_if_changed(
        self, bucket: str, key: str, data: bytes, content_type: str, existing: bytes | None = None
    ) -> bool:
        """Write `data` unless the object already holds exactly these bytes; True if written.

        `existing` is the object's current content when the caller has just read it.
        """
        what = f"cannot write s3://{bucket}/{key}"
        try:
            client = await self._s3()
            if existing is None:
                existing = await self._same_or_none(client, bucket, key, data)
            if existing == data:
                return False
            await client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except ClientError as exc:
            raise translate(exc, what, self.endpoint) from exc
        except LIBRARY_ERRORS as exc:
            raise translate(exc, what, self.endpoint) from exc
        return True

    async def _same_or_none(self, client: Any, bucket: str, key: str, data: bytes) -> bytes | None:
        """`data` when the object holds those bytes (by size and MD5 ETag, else by reading
        them), else None. Missing objects are None."""
        try:
            head = await client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404"):
                return None
            raise
        if int(head.get("ContentLength") or -1) != len(data):
            return None
        if normalize_etag(head.get("ETag")) == hashlib.md5(data, usedforsecurity=False).hexdigest():
            return data
        current = await self.get_optional(bucket, key)
        return data if current == data else None

    async def delete(self, bucket: str, key: str) -> None:
        try:
            client = await self._s3()
            await client.delete_object(Bucket=bucket, Key=key)
        except LIBRARY_ERRORS as exc:
            raise translate(exc, f"cannot delete s3://{bucket}/{key}", self.endpoint) from exc
