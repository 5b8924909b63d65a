"""The API process's one settings object: the core's, the blob store's, Kafka's and its own.

The deployment guide's names and defaults hold (`VLLM_URL` http://localhost, `VLLM_PORT` 8003,
`MODEL_NAME`, `API_HOST` 0.0.0.0, `API_PORT` 8001, `MAX_PAGE_RETRIES` 1,
`SKIP_CROSS_PAGE_MERGE` false). Unlike the worker, whose `VLLM_URL` is unset by default, the
guide's server always has a vLLM address; with `OCRFLUX_ENGINE=auto` (the default) a conversion
uses vLLM while it answers `/health` and the CPU `local` engine otherwise, and `/health` says
which (`engine`). `OCRFLUX_ENGINE=vllm` never falls back: conversions get 503 while vLLM is down.

Kafka settings are only read in `OCRFLUX_MODE=kafka`: a direct-mode server needs no broker.
`API_KEYS` and `REDIS_URL` also answer to `OCRFLUX_API_KEYS` / `OCRFLUX_REDIS_URL`, and like
every secret can be files in `OCRFLUX_SECRETS_DIR` (`ocrflux.settings_base`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from ocrflux.settings import CoreSettings
from ocrflux.settings_base import prefixed
from streams.blobstore import BlobSettings
from streams.kafka import KafkaSettings, bootstrap_from_environment

__all__ = ["ApiSettings"]

#: The guide's default vLLM address (its server always has one, unlike our worker).
GUIDE_VLLM_URL = "http://localhost"


class ApiSettings(KafkaSettings, BlobSettings, CoreSettings):
    # --- the guide's ----------------------------------------------------------------------
    vllm_url: str | None = Field(
        default=GUIDE_VLLM_URL, description="vLLM base URL(s), comma-separated (the guide's)"
    )
    api_host: str = "0.0.0.0"
    api_port: int = Field(default=8001, ge=0, le=65535)

    # --- ours -------------------------------------------------------------------------------
    ocrflux_mode: Literal["direct", "kafka"] = "direct"
    kafka_bootstrap_servers: str = Field(
        default="", description="Read in kafka mode only (else the local broker's state file)"
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys; unset: no authentication",
        validation_alias=prefixed("api_keys"),
    )
    ocrflux_docs_public: bool = Field(
        default=True, description="Serve /docs and /openapi.json without a key"
    )
    ocrflux_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Also serve /metrics on this port, without a key, for scrapers (0: any "
        "free port); /metrics on API_PORT keeps needing a key when API_KEYS is set",
    )
    ocrflux_metrics_host: str = Field(
        default="127.0.0.1", description="Address of the OCRFLUX_METRICS_PORT listener"
    )
    ocrflux_max_conversions: int = Field(
        default=4, ge=1, description="Direct mode: documents converted at once"
    )
    ocrflux_max_queued: int = Field(
        default=100,
        ge=0,
        description="Direct mode: documents waiting for a slot; kafka mode: jobs of this "
        "instance in flight. Beyond it: 503 with Retry-After",
    )
    ocrflux_retry_after_s: int = Field(default=5, ge=1)
    ocrflux_max_upload_bytes_in_flight: int = Field(
        default=1024**3,
        ge=1,
        description="Upload bytes all requests together may be sending (each counted at its "
        "Content-Length, else MAX_FILE_BYTES); beyond it 503 with Retry-After before the body "
        "is read. One upload is always taken when no other is in flight",
    )
    ocrflux_body_read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request body that sends nothing for this long is answered 408 and its "
        "connection closed",
    )
    ocrflux_spool_dir: str = Field(
        default="",
        description="Folder for uploads while they wait for their conversion (on disk: not a "
        "tmpfs, which is memory); empty: the system's temporary folder",
    )
    ocrflux_sync_timeout_s: float = Field(
        default=900.0, gt=0, description="How long /convert/* waits for a result"
    )
    ocrflux_jobs_retained: int = Field(
        default=1000, ge=1, description="Finished jobs kept in memory (oldest go first)"
    )
    ocrflux_job_history_s: float = Field(
        default=86400.0, gt=0, description="Kafka mode: how far back an instance reads jobs"
    )
    ocrflux_catch_up_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Kafka mode: how long a request for a job this instance has not seen "
        "waits for its reader to reach the topics' ends before answering 404",
    )
    ocrflux_fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    ocrflux_callback_attempts: int = Field(default=5, ge=1, le=20)
    ocrflux_callback_backoff_s: float = Field(
        default=1.0,
        gt=0,
        description="Ceiling of the first callback retry wait (full jitter below it); doubles "
        "each time",
    )
    ocrflux_callback_timeout_s: float = Field(default=10.0, gt=0)
    ocrflux_callback_concurrency: int = Field(
        default=64, ge=1, description="Kafka mode: callbacks one instance delivers at once"
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Result cache; unset: LRU", validation_alias=prefixed("redis_url")
    )
    ocrflux_cache_entries: int = Field(default=256, ge=0, description="In-process LRU size")
    ocrflux_cache_ttl_s: int = Field(default=7 * 86400, ge=1, description="Redis entries' TTL")

    @model_validator(mode="before")
    @classmethod
    def _bootstrap_in_kafka_mode(cls, data: Any) -> Any:
        kafka = isinstance(data, dict) and data.get("ocrflux_mode") == "kafka"
        if kafka and not data.get("kafka_bootstrap_servers"):
            data = {**data, "kafka_bootstrap_servers": bootstrap_from_environment()}
        return data

    @property
    def keys(self) -> frozenset[str]:
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return frozenset(_split(raw))


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
