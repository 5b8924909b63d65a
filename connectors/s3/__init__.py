"""The object-storage connector: an S3 source that submits new and changed objects of a bucket as
claim-check document requests, and an S3 sink that writes results back next to them.

    ocrflux connector s3-source --bucket B [--prefix P] [--discovery list|sqs] ...
    ocrflux connector s3-sink   --bucket B --out-prefix P [--format markdown|text]

Modules: `settings` (one pydantic-settings object per process), `objects` (the S3 calls),
`discovery_list` / `discovery_sqs` (how new versions are found), `filters`, `ledger` (what was
submitted, in a compacted topic), `submitter` (Kafka transactions: request + ledger entry),
`source`, `sink` (with `figures`: a result's PNGs beside its Markdown), `metrics`, `cli`.

Errors (`connectors.s3.errors`):

    ConnectorError
    ├── TransientError      retried with exponential backoff, one log line per attempt
    │   ├── AccessDenied    wrong or missing credentials, no permission
    │   └── StoreUnavailable  unreachable, timed out, 5xx, no such bucket or queue
    ├── ObjectChanged       one object is gone or holds another version: skipped
    └── FatalError          another instance took over the transactional id: exit 1

Must not live here: any part of the OCRFlux algorithm, or faust agents.
"""

from connectors.s3.errors import (
    AccessDenied,
    ConnectorError,
    FatalError,
    ObjectChanged,
    StoreUnavailable,
    TransientError,
)
from connectors.s3.ledger import LedgerEntry, object_doc_id
from connectors.s3.settings import S3SinkSettings, S3SourceSettings
from connectors.s3.sink import S3Sink
from connectors.s3.source import S3Source

__all__ = [
    "AccessDenied",
    "ConnectorError",
    "FatalError",
    "LedgerEntry",
    "ObjectChanged",
    "S3Sink",
    "S3SinkSettings",
    "S3Source",
    "S3SourceSettings",
    "StoreUnavailable",
    "TransientError",
    "object_doc_id",
]
