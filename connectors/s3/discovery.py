"""What a discovery mode hands the source: batches of object versions that may be new."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from connectors.s3.objects import ObjectInfo

#: Called with the indices (into `Batch.objects`) that the source handled for good: submitted,
#: already submitted, or skipped by a rule. Queue-based discovery deletes those messages.
Ack = Callable[[set[int]], Awaitable[None]]


async def _no_ack(_handled: set[int]) -> None:
    return None


@dataclass
class Batch:
    objects: list[ObjectInfo]
    ack: Ack = _no_ack
    #: Set on the last batch of a listing pass (the source logs a summary then).
    end_of_pass: bool = False


class Discovery(Protocol):
    def batches(self) -> AsyncGenerator[Batch, None]:
        """Batches until the stop event is set; may raise `TransientError` (the source then
        backs off and calls `batches()` again)."""
        ...

    async def close(self) -> None: ...
