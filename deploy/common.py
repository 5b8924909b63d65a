"""What the deploy helpers share: their error type and where their caches and state live."""

from __future__ import annotations

import os
from pathlib import Path


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, found or stopped."""


def cache_home() -> Path:
    """Where jars and broker state live: `OCRFLUX_HOME`, else `.cache/` of the source checkout."""
    configured = os.environ.get("OCRFLUX_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / ".cache"
