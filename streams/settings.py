"""The worker's one settings object: the core's, Kafka's, and the stream processor's own."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from ocrflux.settings import CoreSettings
from streams.blobstore import BlobSettings
from streams.kafka import KafkaSettings

ROLES = ("split", "recognize", "assemble")


def _worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(KafkaSettings, BlobSettings, CoreSettings):
    ocrflux_worker_id: str = Field(default_factory=_worker_id)
    # A GPU slot that frees up should find the next request waiting: keep the pages in hand
    # above the vLLM batch size (start_vllm_a100.sh: MAX_NUM_SEQS 256) divided by the workers,
    # about 3x with the cross-page merge on (detections share vLLM's queue; README, Monitoring).
    # Each page in hand holds its PNG (tens of KB in grey, up to about 0.5 MB in colour).
    ocrflux_recognize_concurrency: int = Field(
        default=256,
        ge=1,
        description="Pages one worker recognizes at once (keep it above the GPU's batch size "
        "divided by the number of workers, about 3x with the cross-page merge on)",
    )
    ocrflux_merge_concurrency: int = Field(
        default=128, ge=1, description="Merge-detection and table-merge calls at once"
    )
    ocrflux_split_outstanding: int = Field(
        default=8, ge=1, description="Page records the splitter lets wait for delivery"
    )
    # One at a time, a stream of small documents reached the model one document's pages at a
    # time (40 8-page documents: the GPU stand-in half idle); each in hand holds its bytes.
    ocrflux_split_concurrency: int = Field(
        default=4,
        ge=1,
        description="Documents one worker splits at once (each holds its bytes and up to "
        "OCRFLUX_SPLIT_OUTSTANDING rendered pages)",
    )
    ocrflux_metrics_port: int | None = Field(
        default=None, description="Serve Prometheus metrics on this port (0: any free port)"
    )
    ocrflux_metrics_host: str = "127.0.0.1"
    ocrflux_sweep_interval_s: float = Field(
        default=5.0, gt=0, description="How often the assembler relaunches lost merge jobs"
    )
    ocrflux_session_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long the group waits for a silent worker before "
        "giving its partitions to others (a crashed worker's pages wait this long)",
    )
    ocrflux_max_record_time_s: float = Field(
        default=1800.0,
        gt=0,
        description="Longest a worker may spend on records in hand before "
        "the group hands its partitions to others (vLLM retries included)",
    )
    ocrflux_drain_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="On rebalance or shutdown, how long records in hand may "
        "finish before they are left to the partitions' next owner",
    )

    @property
    def result_max_bytes(self) -> int:
        """Results above this go to the blob store (leave room for the record's framing)."""
        return self.kafka_message_max_bytes - 64 * 1024
