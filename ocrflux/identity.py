"""Document identity: the default `doc_id` is a hash of the bytes and of every option that changes
the output, so resubmitting the same document with the same options is idempotent."""

from __future__ import annotations

import hashlib
import json

from schemas.options import ConversionOptions

DOC_ID_HEX_CHARS = 32


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def doc_id_for(content_sha256: str, options: ConversionOptions) -> str:
    """`doc_id` from the content's SHA-256 (hex) and the options (all of them change output)."""
    canonical = json.dumps(options.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{content_sha256}\n{canonical}".encode()).hexdigest()
    return digest[:DOC_ID_HEX_CHARS]
