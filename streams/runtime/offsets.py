"""Which offsets are safe to commit when records finish out of order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Partition:
    next_expected: int | None = None  # the offset after the last one handed out
    committed: int | None = None  # what was last committed (the next offset to read)
    pending: set[int] = field(default_factory=set)  # handed out, not finished


class OffsetTracker:
    """Per partition: the commit position is the lowest offset still being processed, or one
    past the last offset handed out when none is. Records are handed out in offset order, so
    every record below that position has finished (offsets a compacted topic skipped were
    never handed out and need nothing)."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def started(self, partition: int, offset: int) -> None:
        part = self._parts.setdefault(partition, _Partition())
        if part.next_expected is None or offset >= part.next_expected:
            part.next_expected = offset + 1
        part.pending.add(offset)

    def finished(self, partition: int, offset: int) -> None:
        part = self._parts.get(partition)
        if part is None or offset not in part.pending:
            return  # the partition was dropped (revoked) meanwhile
        part.pending.discard(offset)

    def commit_position(self, partition: int) -> int | None:
        """The offset to commit now, or None when nothing new is safe."""
        part = self._parts.get(partition)
        if part is None or part.next_expected is None:
            return None
        position = min(part.pending) if part.pending else part.next_expected
        if part.committed is not None and position <= part.committed:
            return None
        return position

    def committed(self, partition: int, position: int) -> None:
        part = self._parts.setdefault(partition, _Partition())
        part.committed = position

    def in_flight(self, partition: int) -> int:
        part = self._parts.get(partition)
        return len(part.pending) if part else 0

    def partitions(self) -> list[int]:
        return list(self._parts)

    def drop(self, partition: int) -> None:
        self._parts.pop(partition, None)
