"""Discovery by listing: a paginated ListObjectsV2 pass over the prefix every poll interval.

Works with any S3-compatible store. Every pass lists every object under the prefix; the source
drops the versions its ledger already holds, so the cost of a pass is the listing itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator

from connectors.s3.discovery import Batch
from connectors.s3.objects import ObjectStore
from connectors.s3.retry import wait_or_stop

log = logging.getLogger(__name__)


class ListingDiscovery:
    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        prefix: str,
        *,
        interval_s: float,
        stop: asyncio.Event,
        once: bool = False,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix
        self.interval_s = interval_s
        self.stop = stop
        self.once = once

    async def batches(self) -> AsyncGenerator[Batch, None]:
        while not self.stop.is_set():
            started = time.monotonic()
            listed = 0
            previous: Batch | None = None
            async for page in self.store.list_pages(self.bucket, self.prefix):
                listed += len(page)
                if previous is not None:
                    yield previous
                previous = Batch(page)
                if self.stop.is_set():
                    return
            last = previous or Batch([])
            last.end_of_pass = True
            yield last
            log.debug(
                "listed %d objects under s3://%s/%s in %.2fs",
                listed,
                self.bucket,
                self.prefix,
                time.monotonic() - started,
            )
            if self.once or await wait_or_stop(self.stop, self.interval_s):
                return

    async def close(self) -> None:
        return None
