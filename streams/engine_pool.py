"""The engines a worker uses, opened once with the worker and closed with it."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import mode

from ocrflux.engines import Engine, open_engine
from ocrflux.settings import CoreSettings

_log = logging.getLogger(__name__)


class EnginePool(mode.Service):
    """The worker's default engine (OCRFLUX_ENGINE) plus any other a request asks for."""

    def __init__(self, settings: CoreSettings, *, open_default: bool = True) -> None:
        super().__init__()
        self._settings = settings
        self._open_default = open_default
        self._stack = AsyncExitStack()
        self._engines: dict[str, Engine] = {}
        self._lock = asyncio.Lock()

    async def on_start(self) -> None:
        if self._open_default:
            await self.get(None)

    async def on_stop(self) -> None:
        await self._stack.aclose()
        self._engines.clear()

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
