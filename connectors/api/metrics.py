"""Prometheus metrics of one API process, on a registry of its own (`GET /metrics`).

ocrflux_api_requests_total{route,method,status}   answers by route template and status
ocrflux_api_request_duration_seconds{route}        latency histogram
ocrflux_api_jobs{state}                            jobs this instance knows, by state
ocrflux_api_jobs_finished_total{state}             jobs that ended here
ocrflux_api_conversions_in_flight                  direct mode: running + waiting
ocrflux_api_saturated_total                        submissions refused with 503
ocrflux_api_cache_lookups_total{result}            result cache hits and misses
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from connectors.api.jobs import JobStore

__all__ = ["ApiMetrics", "metrics_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Latency buckets from a health check (ms) to a long document converted synchronously.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class _JobsCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self._store = store

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily("ocrflux_api_jobs", "Jobs known by state", labels=["state"])
        for state, count in self._store.counts().items():
            family.add_metric([state], count)
        return [family]


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ocrflux_api_requests",
            "HTTP answers by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ocrflux_api_request_duration_seconds",
            "Time to answer, by route template",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "ocrflux_api_jobs_finished", "Jobs that ended", ["state"], registry=self.registry
        )
        self.in_flight = Gauge(
            "ocrflux_api_conversions_in_flight",
            "Direct mode: conversions running or waiting for a slot",
            registry=self.registry,
        )
        self.saturated = Counter(
            "ocrflux_api_saturated", "Submissions refused with 503", registry=self.registry
        )
        self.cache = Counter(
            "ocrflux_api_cache_lookups", "Result cache lookups", ["result"], registry=self.registry
        )

    def watch_jobs(self, store: JobStore) -> None:
        self.registry.register(_JobsCollector(store))

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics and their content type in the format the scraper's `Accept` header asks
        for, as prometheus_client's own endpoint (the workers' and the connector's) answers: the
        text format `text/plain; version=0.0.4; charset=utf-8` unless OpenMetrics is asked."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


def metrics_middleware(metrics: ApiMetrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = _route(request)
            metrics.requests.labels(route=route, method=request.method, status=str(status)).inc()
            metrics.latency.labels(route=route).observe(time.monotonic() - started)

    return middleware


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical
