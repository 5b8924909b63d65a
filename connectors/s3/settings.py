"""Settings of `ocrflux connector s3-source` and `s3-sink`: one frozen object per process, from
environment variables (flags override them; see `connectors.s3.cli`).

S3 connection (both):
    OCRFLUX_S3_ENDPOINT_URL       S3 endpoint (MinIO, rclone, moto); unset: botocore's chain
                                  (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS itself)
    OCRFLUX_S3_REGION             unset: AWS_REGION / AWS_DEFAULT_REGION / the profile
    OCRFLUX_S3_ACCESS_KEY_ID, OCRFLUX_S3_SECRET_ACCESS_KEY, OCRFLUX_S3_SESSION_TOKEN
                                  unset: botocore's chain (AWS_ACCESS_KEY_ID,
                                  AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, ~/.aws)
    OCRFLUX_S3_BUCKET             the bucket to watch (source) or to write to (sink)
    OCRFLUX_METRICS_PORT, OCRFLUX_METRICS_HOST   Prometheus endpoint (port 0: any free port)
    OCRFLUX_S3_RETRY_INITIAL_S, OCRFLUX_S3_RETRY_MAX_S   wait ceilings after a failed attempt

Source: OCRFLUX_S3_PREFIX, OCRFLUX_S3_DISCOVERY (list|sqs), OCRFLUX_S3_QUEUE_URL,
OCRFLUX_SQS_ENDPOINT_URL, OCRFLUX_S3_POLL_INTERVAL_S, OCRFLUX_S3_SUFFIXES (comma-separated),
OCRFLUX_S3_CONTENT_TYPES, OCRFLUX_S3_MIN_SIZE, OCRFLUX_S3_MAX_SIZE, OCRFLUX_S3_CONCURRENCY,
OCRFLUX_S3_VISIBILITY_TIMEOUT_S, OCRFLUX_S3_INITIAL_SCAN, OCRFLUX_S3_INSTANCE_ID,
OCRFLUX_S3_FIGURES (crop|none, default crop: figures cropped as PNGs, which the sink writes
beside the Markdown), OCRFLUX_S3_FIGURE_SCALE (with crop; default 2).

Sink: OCRFLUX_S3_OUT_PREFIX, OCRFLUX_S3_FORMAT (markdown|text|json|chunks),
OCRFLUX_S3_CHUNK_TOKENS (with chunks: a chunk's token budget, default 512), OCRFLUX_S3_GROUP_ID,
OCRFLUX_S3_SOURCE_BUCKET. Kafka comes from `KafkaSettings` (KAFKA_BOOTSTRAP_SERVERS, ...), the
blob store that oversized results live in from `BlobSettings`. Credentials can also be files in
`OCRFLUX_SECRETS_DIR` (`ocrflux.settings_base`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from ocrflux.settings_base import OcrfluxSettings
from ocrflux.sniff import ACCEPTED_EXTENSIONS
from schemas.options import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_FIGURE_SCALE,
    MAX_CHUNK_TOKENS,
    MAX_FIGURE_SCALE,
    MIN_CHUNK_TOKENS,
    MIN_FIGURE_SCALE,
    ConversionOptions,
    FiguresMode,
    OutputFormat,
)
from streams.blobstore import BlobSettings
from streams.kafka import KafkaSettings

#: By default only what the converter accepts is submitted; this also keeps a sink that writes
#: `.md` and `.json` into the watched bucket from feeding its own output back in.
DEFAULT_SUFFIXES = tuple(sorted(ACCEPTED_EXTENSIONS))

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str | int) -> int:
    """Bytes from `123`, `64K`, `1.5M`, `2GiB`, `10mb` (binary units)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (try 1048576, 512K, 100M or 2G)")
    number, unit, _ = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _size_or_none(value: Any) -> Any:
    if value is None or value == "":
        return None
    return parse_size(value)


#: A comma-separated list in the environment, a sequence in Python.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split)]
Size = Annotated[int, BeforeValidator(parse_size)]
OptionalSize = Annotated[int | None, BeforeValidator(_size_or_none)]


class S3ConnectionSettings(OcrfluxSettings):
    """Where the bucket is and how to sign requests; None leaves a value to botocore's chain."""

    ocrflux_s3_bucket: str = Field(min_length=3, max_length=63)
    ocrflux_s3_endpoint_url: str | None = None
    ocrflux_s3_region: str | None = None
    ocrflux_s3_access_key_id: str | None = None
    ocrflux_s3_secret_access_key: SecretStr | None = None
    ocrflux_s3_session_token: SecretStr | None = None
    ocrflux_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    ocrflux_metrics_host: str = "127.0.0.1"
    ocrflux_s3_retry_initial_s: float = Field(default=1.0, gt=0)
    ocrflux_s3_retry_max_s: float = Field(default=60.0, gt=0)

    def client_args(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """Keyword arguments for botocore's `create_client`: only what was set explicitly."""
        values = {
            "endpoint_url": endpoint_url or self.ocrflux_s3_endpoint_url,
            "region_name": self.ocrflux_s3_region,
            "aws_access_key_id": self.ocrflux_s3_access_key_id,
            "aws_secret_access_key": _secret(self.ocrflux_s3_secret_access_key),
            "aws_session_token": _secret(self.ocrflux_s3_session_token),
        }
        return {key: value for key, value in values.items() if value is not None}


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class S3SourceSettings(S3ConnectionSettings, KafkaSettings):
    """`ocrflux connector s3-source`."""

    ocrflux_s3_prefix: str = ""
    ocrflux_s3_discovery: Literal["list", "sqs"] = "list"
    ocrflux_s3_queue_url: str | None = None
    ocrflux_sqs_endpoint_url: str | None = Field(
        default=None, description="SQS endpoint; unset: the S3 endpoint when one is given"
    )
    ocrflux_s3_poll_interval_s: float = Field(
        default=30.0, gt=0, description="Listing: time between passes; SQS: longest receive wait"
    )
    ocrflux_s3_suffixes: CommaList = DEFAULT_SUFFIXES
    ocrflux_s3_content_types: CommaList = ()
    ocrflux_s3_min_size: Size = Field(default=1, ge=0)
    ocrflux_s3_max_size: OptionalSize = None
    ocrflux_s3_concurrency: int = Field(
        default=4, ge=1, description="Objects read (hashed) at once; also the most per commit"
    )
    ocrflux_s3_visibility_timeout_s: int = Field(
        default=300,
        ge=1,
        le=43200,
        description="How long a received SQS message stays hidden; it must outlast the "
        "handling of one batch (hashing up to ten objects)",
    )
    ocrflux_s3_initial_scan: bool = Field(
        default=False, description="SQS: one listing pass at start for objects without events"
    )
    ocrflux_s3_instance_id: str | None = Field(
        default=None,
        description="Kafka transactional id; default: derived from the topic prefix, bucket "
        "and prefix, so that a second source on the same objects fences the first",
    )
    ocrflux_s3_figures: FiguresMode = Field(
        default="crop",
        description="crop: each figure is cropped as a PNG (the sink writes them beside the "
        "Markdown, linked); none: figures are left out",
    )
    ocrflux_s3_figure_scale: float | None = Field(
        default=None,
        ge=MIN_FIGURE_SCALE,
        le=MAX_FIGURE_SCALE,
        description="With crop: how many times larger than the model's page image figures "
        f"are cropped from (default {DEFAULT_FIGURE_SCALE})",
    )

    @field_validator("ocrflux_s3_suffixes", "ocrflux_s3_content_types")
    @classmethod
    def _lowercase(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(item.lower() for item in value)

    @model_validator(mode="after")
    def _figure_scale_with_crop(self) -> S3SourceSettings:
        if self.ocrflux_s3_figure_scale is not None and self.ocrflux_s3_figures != "crop":
            raise ValueError("a figure scale goes with figures=crop")
        return self

    @property
    def conversion_options(self) -> ConversionOptions:
        """The options every submitted document carries. Without figures the field stays
        unset, so such requests are what a source without this setting submitted (same
        doc_ids, readable by workers that predate figures)."""
        if self.ocrflux_s3_figures == "none":
            return ConversionOptions()
        return ConversionOptions(figures="crop", figure_scale=self.ocrflux_s3_figure_scale)

    @property
    def transactional_id(self) -> str:
        if self.ocrflux_s3_instance_id:
            return self.ocrflux_s3_instance_id
        where = f"{self.ocrflux_s3_bucket}/{self.ocrflux_s3_prefix}"
        digest = hashlib.sha256(where.encode()).hexdigest()[:16]
        return f"ocrflux-s3-source.{self.ocrflux_topic_prefix}.{self.ocrflux_s3_bucket}.{digest}"

    @property
    def sqs_endpoint_url(self) -> str | None:
        return self.ocrflux_sqs_endpoint_url or self.ocrflux_s3_endpoint_url


class S3SinkSettings(S3ConnectionSettings, KafkaSettings, BlobSettings):
    """`ocrflux connector s3-sink`."""

    ocrflux_s3_out_prefix: str = "ocrflux"
    ocrflux_s3_format: OutputFormat = Field(
        default="markdown",
        description="What goes next to the result's .json: .md, .txt, .chunks.json, or nothing "
        "(json: the .json is the whole result)",
    )
    ocrflux_s3_chunk_tokens: int = Field(
        default=DEFAULT_CHUNK_TOKENS, ge=MIN_CHUNK_TOKENS, le=MAX_CHUNK_TOKENS
    )
    ocrflux_s3_group_id: str | None = None
    ocrflux_s3_source_bucket: str | None = Field(
        default=None, description="Only results of objects from this bucket; unset: all"
    )

    @property
    def out_prefix(self) -> str:
        return self.ocrflux_s3_out_prefix.strip("/")

    @property
    def group_id(self) -> str:
        if self.ocrflux_s3_group_id:
            return self.ocrflux_s3_group_id
        return f"ocrflux-s3-sink.{self.ocrflux_s3_bucket}.{self.out_prefix or '-'}"
