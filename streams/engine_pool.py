"""The engines a worker uses, each opened on first use and closed with the worker."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from ocrflux.engines import Engine, open_engine
from ocrflux.settings import CoreSettings


class EnginePool:
    """The worker's default engine (OCRFLUX_ENGINE) plus any other a request asks for."""

    def __init__(self, settings: CoreSettings) -> None:
        self._settings = settings
        self._stack = AsyncExitStack()
        self._engines: dict[str, Engine] = {}
        self._lock = asyncio.Lock()

    async def get(self, requested: str | None) -> Engine:
        name = requested or self._settings.ocrflux_engine
        engine = self._engines.get(name)
        if engine is not None:
            return engine
        async with self._lock:
            if name not in self._engines:
                self._engines[name] = await self._stack.enter_async_context(
                    open_engine(self._settings, name)
                )
            return self._engines[name]

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._engines.clear()
