"""The result cache: document results keyed by content hash + options (+ engine).

    ResultCache     async get(key) -> DocumentResult | None; put(key, result); close()
    ├── LruCache    in-process, at most `entries` results (default when REDIS_URL is unset)
    └── RedisCache  `redis.asyncio`, JSON values under `ocrflux:result:<key>` with a TTL

Keys come from `ocrflux.identity.doc_id_for` (the same id the stream processor uses), so a
resubmitted document is answered without recognising it again. Only `completed` results are
stored: a `partial` one (pages filled from text layers because the model failed them) is a
degraded answer that a later conversion may improve, and a failed one is no answer. A cache
that fails is logged and skipped: the cache may make answers faster, never make them fail.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol

from pydantic import ValidationError

from schemas.results import DocumentResult

__all__ = ["LruCache", "RedisCache", "ResultCache", "cache_key", "open_cache"]

_log = logging.getLogger(__name__)

REDIS_PREFIX = "ocrflux:result:"


def cache_key(doc_id: str, engine: str) -> str:
    """The key of a result: its doc_id and the engine that produced it (vLLM and the CPU
    engine give different text for the same document)."""
    return f"{engine}:{doc_id}"


def worth_caching(result: DocumentResult) -> bool:
    return result.status == "completed"


class ResultCache(Protocol):
    name: str

    async def get(self, key: str) -> DocumentResult | None: ...

    async def put(self, key: str, result: DocumentResult) -> None: ...

    async def close(self) -> None: ...


class LruCache:
    """The most recently used `entries` results of this process."""

    name = "lru"

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._items: OrderedDict[str, DocumentResult] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> DocumentResult | None:
        result = self._items.get(key)
        if result is not None:
            self._items.move_to_end(key)
        return result

    async def put(self, key: str, result: DocumentResult) -> None:
        if self._entries == 0 or not worth_caching(result):
            return
        self._items[key] = result
        self._items.move_to_end(key)
        while len(self._items) > self._entries:
            self._items.popitem(last=False)

    async def close(self) -> None:
        self._items.clear()


class RedisCache:
    """Results in Redis, shared by every API instance that uses the same server."""

    name = "redis"

    def __init__(self, url: str, *, ttl_s: int) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._ttl_s = ttl_s

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception as exc:  # any client error means "not reachable now"
            _log.warning("Redis does not answer: %s", exc)
            return False

    async def get(self, key: str) -> DocumentResult | None:
        from redis.exceptions import RedisError

        try:
            raw = await self._redis.get(REDIS_PREFIX + key)
        except RedisError as exc:
            _log.warning("result cache get failed: %s", exc)
            return None
        if raw is None:
            return None
        try:
            return DocumentResult.model_validate_json(raw)
        except ValidationError:
            _log.warning("dropping an unreadable cache entry %s", key)
            return None

    async def put(self, key: str, result: DocumentResult) -> None:
        from redis.exceptions import RedisError

        if not worth_caching(result):
            return
        try:
            await self._redis.set(REDIS_PREFIX + key, result.model_dump_json(), ex=self._ttl_s)
        except RedisError as exc:
            _log.warning("result cache put failed: %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()


def open_cache(redis_url: str | None, *, entries: int, ttl_s: int) -> LruCache | RedisCache:
    if redis_url:
        return RedisCache(redis_url, ttl_s=ttl_s)
    return LruCache(entries)
