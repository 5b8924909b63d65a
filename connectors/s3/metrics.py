"""Prometheus metrics of the S3 source and sink, each on its own registry (`--metrics-port`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class _Served:
    registry: CollectorRegistry

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


class SourceMetrics(_Served):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.objects_seen = Counter(
            "ocrflux_s3_source_objects_seen_total", "Object versions discovered", registry=r
        )
        self.skipped = Counter(
            "ocrflux_s3_source_objects_skipped_total",
            "Object versions not submitted, by reason",
            ["reason"],
            registry=r,
        )
        self.submitted = Counter(
            "ocrflux_s3_source_submitted_total", "Document requests committed", registry=r
        )
        self.bytes_read = Counter(
            "ocrflux_s3_source_bytes_hashed_total", "Object bytes read to hash them", registry=r
        )
        self.errors = Counter(
            "ocrflux_s3_source_errors_total", "Failed attempts, by kind", ["kind"], registry=r
        )
        self.sqs_messages = Counter(
            "ocrflux_s3_source_sqs_messages_total",
            "SQS messages received, by kind",
            ["kind"],
            registry=r,
        )
        self.ledger_entries = Gauge(
            "ocrflux_s3_source_ledger_entries",
            "Objects the ledger holds for this bucket",
            registry=r,
        )
        self.last_success = Gauge(
            "ocrflux_s3_source_last_success_timestamp_seconds",
            "When a discovery batch was last handled without error",
            registry=r,
        )


class SinkMetrics(_Served):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.results = Counter(
            "ocrflux_s3_sink_results_total", "Results handled, by status", ["status"], registry=r
        )
        self.writes = Counter(
            "ocrflux_s3_sink_objects_total",
            "Output objects, by outcome (written, unchanged, deleted, stale; unavailable: "
            "a figure that could not be fetched)",
            ["outcome"],
            registry=r,
        )
        self.errors = Counter(
            "ocrflux_s3_sink_errors_total", "Failed attempts, by kind", ["kind"], registry=r
        )
        self.last_success = Gauge(
            "ocrflux_s3_sink_last_success_timestamp_seconds",
            "When a batch of results was last written and committed",
            registry=r,
        )
