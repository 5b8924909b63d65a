"""The core's settings, read once at a process's entry point and passed down (frozen).

Environment names are the deployment guide's where it has one (`VLLM_URL`, `VLLM_PORT`,
`MODEL_NAME`, `MAX_PAGE_RETRIES`, `SKIP_CROSS_PAGE_MERGE`); processes that need more (workers,
the API) subclass this, so each process still has exactly one settings object.

`CoreSettings` is built on `ocrflux.settings_base.OcrfluxSettings`, the base of every settings
class: our own unprefixed names also answer to `OCRFLUX_<NAME>` (`prefixed`), and secrets can
come from files in `OCRFLUX_SECRETS_DIR`.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from ocrflux.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PAGES
from ocrflux.settings_base import OcrfluxSettings, prefixed

__all__ = ["CoreSettings"]


class CoreSettings(OcrfluxSettings):
    vllm_url: str | None = Field(
        default=None,
        description="Base URL(s) of the vLLM server(s), comma-separated; unset means no vLLM "
        "(the `auto` engine then uses `local`)",
    )
    vllm_port: int = Field(default=8003, description="Port added to VLLM_URL entries without one")
    model_name: str = "ChatDOC/OCRFlux-3B"
    max_page_retries: int = Field(
        default=1, ge=1, le=10, description="Attempts per model task (the guide's name)"
    )
    skip_cross_page_merge: bool = False
    ocrflux_engine: Literal["vllm", "local", "auto"] = "auto"

    vllm_request_timeout_s: float = Field(
        default=300.0, gt=0, validation_alias=prefixed("vllm_request_timeout_s")
    )
    vllm_max_tokens: int | None = Field(
        default=8192,
        description="Cap per generation, so a looping answer frees its GPU slot",
        validation_alias=prefixed("vllm_max_tokens"),
    )
    vllm_max_inflight: int = Field(
        default=256,
        ge=1,
        description="Requests in flight per vLLM server from this process "
        "(at least the pages a worker holds, see OCRFLUX_RECOGNIZE_CONCURRENCY)",
        validation_alias=prefixed("vllm_max_inflight"),
    )
    vllm_retry_budget_s: float = Field(
        default=120.0,
        ge=0,
        description="Total wait on transport errors before a task fails",
        validation_alias=prefixed("vllm_retry_budget_s"),
    )
    vllm_health_interval_s: float = Field(
        default=10.0, gt=0, validation_alias=prefixed("vllm_health_interval_s")
    )
    model_max_len: int = Field(
        default=16384,
        description="The served context length (vLLM --max-model-len); table "
        "pairs too large for it are merged without the model",
        validation_alias=prefixed("model_max_len"),
    )

    page_concurrency: int = Field(
        default=64,
        ge=1,
        description="Pages of one document recognised at once (direct path)",
        validation_alias=prefixed("page_concurrency"),
    )
    max_file_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, ge=1, validation_alias=prefixed("max_file_bytes")
    )
    max_pages: int = Field(default=DEFAULT_MAX_PAGES, ge=1, validation_alias=prefixed("max_pages"))
    ocrflux_render_processes: int | None = Field(
        default=None,
        ge=0,
        description="Processes that render PDF pages (`ocrflux.render_pool`); 0 renders in "
        "the process itself; default: the CPU count",
    )

    @property
    def render_processes(self) -> int:
        """`OCRFLUX_RENDER_PROCESSES`, else the CPU count."""
        if self.ocrflux_render_processes is not None:
            return self.ocrflux_render_processes
        return os.cpu_count() or 1
