"""Choosing and building the engine a process uses.

`auto` takes vLLM when `VLLM_URL` is set and one of its servers answers `/health`, else the
CPU `local` engine; the choice and its reason are logged, because a silent fallback to CPU
would look like a very slow GPU.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ocrflux.engines.base import Engine
from ocrflux.engines.vllm import VllmEngine
from ocrflux.errors import ModelUnavailable
from ocrflux.settings import CoreSettings
from ocrflux.vllm_client import VllmClient, server_urls

_log = logging.getLogger(__name__)

#: How long `auto` waits for vLLM's /health before choosing the local engine.
AUTO_PROBE_TIMEOUT_S = 3.0


def vllm_client(settings: CoreSettings) -> VllmClient:
    if not settings.vllm_url:
        raise ModelUnavailable("the vllm engine needs VLLM_URL (and VLLM_PORT) to be set")
    return VllmClient(
        server_urls(settings.vllm_url, settings.vllm_port),
        model=settings.model_name,
        max_inflight_per_server=settings.vllm_max_inflight,
        request_timeout_s=settings.vllm_request_timeout_s,
        max_tokens=settings.vllm_max_tokens,
        transport_retry_budget_s=settings.vllm_retry_budget_s,
        health_interval_s=settings.vllm_health_interval_s,
        probe_timeout_s=AUTO_PROBE_TIMEOUT_S,
    )


async def resolve_engine_name(
    settings: CoreSettings, requested: str | None = None
) -> tuple[str, str]:
    """The engine to use and why: (name, reason)."""
    name = requested or settings.ocrflux_engine
    if name != "auto":
        return name, f"{name} engine requested"
    if not settings.vllm_url:
        return "local", "VLLM_URL is not set"
    async with vllm_client(settings) as client:
        health = await client.probe()
    if any(health.values()):
        return "vllm", f"vLLM answers at {', '.join(u for u, ok in health.items() if ok)}"
    return "local", f"VLLM_URL is set but {', '.join(health)} did not answer /health"


@asynccontextmanager
async def open_engine(
    settings: CoreSettings, requested: str | None = None
) -> AsyncIterator[Engine]:
    """Build the engine for `requested` (else OCRFLUX_ENGINE) and close it afterwards."""
    name, reason = await resolve_engine_name(settings, requested)
    _log.info("using the %s engine: %s", name, reason)
    if name == "vllm":
        async with vllm_client(settings) as client:
            yield VllmEngine(
                client,
                model=settings.model_name,
                max_tokens=settings.vllm_max_tokens,
                model_max_len=settings.model_max_len,
            )
        return
    try:
        from ocrflux.engines.local import open_local_engine
    except ImportError as exc:
        raise ModelUnavailable(f"the local engine is not installed: {exc}") from exc
    async with open_local_engine(settings) as engine:
        yield engine
