"""The application's typed keys: what handlers find on `request.app`, set up by `create_app`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connectors.api.direct import DirectMode
from connectors.api.fetch import GuardedHttp
from connectors.api.kafka_mode import KafkaMode
from connectors.api.metrics import ApiMetrics
from connectors.api.service import JobService
from connectors.api.settings import ApiSettings
from connectors.api.spool import SpoolFolder
from ocrflux.vllm_client import VllmClient

SETTINGS = web.AppKey("settings", ApiSettings)
METRICS = web.AppKey("metrics", ApiMetrics)
SERVICE = web.AppKey("service", JobService)
#: The vLLM client for /health and /models (and direct mode's engine); None with engine=local.
VLLM: web.AppKey[VllmClient | None] = web.AppKey("vllm")
HTTP = web.AppKey("http", GuardedHttp)
MODE: web.AppKey[DirectMode | KafkaMode] = web.AppKey("mode")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
SPOOLS = web.AppKey("spools", SpoolFolder)
