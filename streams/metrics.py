"""Prometheus metrics of a worker: pages, documents, retries, fallbacks, vLLM latency and load,
errors by code. Served on OCRFLUX_METRICS_PORT when set."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from schemas.records import PageDone, ResultRecord

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.documents_split = Counter(
            "ocrflux_documents_split_total", "Documents split into pages", registry=r
        )
        self.pages_split = Counter("ocrflux_pages_split_total", "Page tasks emitted", registry=r)
        self.pages = Counter(
            "ocrflux_pages_recognized_total", "Pages recognized, by source", ["source"], registry=r
        )
        self.fallback_pages = Counter(
            "ocrflux_fallback_pages_total", "Pages the model failed on every attempt", registry=r
        )
        self.retries = Counter(
            "ocrflux_page_retries_total", "Page attempts beyond the first", registry=r
        )
        self.page_latency = Histogram(
            "ocrflux_vllm_page_latency_seconds",
            "Model time per recognized page",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.documents = Counter(
            "ocrflux_documents_total", "Document results, by status", ["status"], registry=r
        )
        self.errors = Counter(
            "ocrflux_errors_total", "Errors, by stage and code", ["stage", "code"], registry=r
        )
        self.merge_jobs = Counter(
            "ocrflux_merge_jobs_total",
            "Merge-detection and table-merge calls, by kind",
            ["kind"],
            registry=r,
        )
        self.inflight = Gauge(
            "ocrflux_vllm_inflight_requests",
            "Requests this worker has in flight to vLLM",
            registry=r,
        )

    def track_inflight(self, read: Callable[[], float]) -> None:
        self.inflight.set_function(read)

    def page_done(self, done: PageDone) -> None:
        result = done.result
        self.pages.labels(result.source).inc()
        if result.fallback:
            self.fallback_pages.inc()
            if result.error is not None:
                self.errors.labels("recognize", result.error.code).inc()
        if result.attempts > 1:
            self.retries.inc(result.attempts - 1)
        if result.source == "model":
            self.page_latency.observe(result.latency_s)

    def document_done(self, result: ResultRecord) -> None:
        self.documents.labels(result.status).inc()
        if result.status == "failed" and result.error is not None:
            self.errors.labels("document", result.error.code).inc()

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
