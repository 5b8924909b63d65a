"""Repeated log lines, one per cause per interval, with a count of the ones held back.

While the broker is down the Kafka client logs every failed connection and metadata refresh,
thousands of lines a minute that bury everything else. `RepeatFilter` lets the first line of a
cause through, holds back the repeats for `interval_s`, and then lets the next one through with
"(N more like this in the last S s)" appended. A cause is the logger, the level and the message
template (its arguments may vary: the node, the error text).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Where the runtime logs what repeats for as long as Kafka is unreachable (deliveries sent
#: again, handlers retried); its state changes (pausing, resuming) are logged elsewhere, in full.
OUTAGE_LOGGER = "streams.runtime.outage"
#: The loggers whose repeats are limited: the Kafka client's, and the runtime's outage log.
LIMITED_LOGGERS = ("aiokafka", "kafka", OUTAGE_LOGGER)


@dataclass
class _Cause:
    shown_at: float
    held_back: int = 0


class RepeatFilter(logging.Filter):
    def __init__(
        self,
        interval_s: float = 30.0,
        loggers: Iterable[str] = LIMITED_LOGGERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._loggers = tuple(loggers)
        self._clock = clock
        self._causes: dict[tuple[str, int, str], _Cause] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limited(record.name):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        cause = self._causes.get(key)
        if cause is None:
            self._causes[key] = _Cause(shown_at=now)
            return True
        if now - cause.shown_at < self._interval_s:
            cause.held_back += 1
            return False
        if cause.held_back:
            record.msg = (
                f"{record.getMessage()} ({cause.held_back} more like this in the last "
                f"{now - cause.shown_at:.0f} s)"
            )
            record.args = ()
        self._causes[key] = _Cause(shown_at=now)
        return True

    def _limited(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self._loggers)


def limit_repeats(interval_s: float = 30.0) -> RepeatFilter:
    """Install one `RepeatFilter` on every handler of the root logger; returns it."""
    repeat_filter = RepeatFilter(interval_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeat_filter)
    return repeat_filter
