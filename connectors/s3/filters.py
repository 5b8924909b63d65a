"""Which objects the source submits: prefix, suffix, size and Content-Type rules."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.s3.objects import ObjectInfo
from connectors.s3.settings import S3SourceSettings
from ocrflux.errors import FetchFailed
from streams.blobstore.s3 import parse_s3_url


@dataclass(frozen=True)
class ObjectFilter:
    prefix: str = ""
    suffixes: tuple[str, ...] = ()  # lower case; empty: any
    content_types: tuple[str, ...] = ()  # lower case, without parameters; empty: any
    min_size: int = 0
    max_size: int | None = None

    @classmethod
    def from_settings(cls, settings: S3SourceSettings) -> ObjectFilter:
        return cls(
            prefix=settings.ocrflux_s3_prefix,
            suffixes=settings.ocrflux_s3_suffixes,
            content_types=settings.ocrflux_s3_content_types,
            min_size=settings.ocrflux_s3_min_size,
            max_size=settings.ocrflux_s3_max_size,
        )

    def reason(self, obj: ObjectInfo) -> str | None:
        """Why `obj` is not submitted (a metric label), or None when it is wanted."""
        if not obj.key.startswith(self.prefix):
            return "prefix"
        if obj.key.endswith("/"):
            return "folder"
        if self.suffixes and not obj.key.lower().endswith(self.suffixes):
            return "suffix"
        if obj.size < self.min_size or (self.max_size is not None and obj.size > self.max_size):
            return "size"
        if not addressable(obj.bucket, obj.key):
            return "key"
        return None

    @property
    def checks_type(self) -> bool:
        return bool(self.content_types)

    def accepts_type(self, content_type: str | None) -> bool:
        if not self.content_types:
            return True
        base = (content_type or "").split(";", 1)[0].strip().lower()
        return base in self.content_types


def addressable(bucket: str, key: str) -> bool:
    """Whether `s3://bucket/key` names this very object for the worker's blob reader (keys with
    `#` or `?` do not survive as URLs there)."""
    try:
        return parse_s3_url(f"s3://{bucket}/{key}") == (bucket, key)
    except FetchFailed:
        return False
