"""One logging setup for every `ocrflux` command and server (`configure`), and its flags.

    OCRFLUX_LOG_LEVEL    debug | info (default) | warning | error | critical
    OCRFLUX_LOG_FORMAT   text (default): `TIME LEVEL LOGGER: MESSAGE` per line;
                         json: one object per line with `time`, `level`, `logger`, `message`,
                         the context fields below when the line has them, and `exc` (the
                         traceback) when it reports an exception

Log sites that know which document, page, job or request a line is about pass it with
`extra={"doc_id": ..., "page": ..., "job_id": ..., "request_id": ...}`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ocrflux.log_settings import LogSettings

__all__ = [
    "CONTEXT_FIELDS",
    "LEVELS",
    "JsonFormatter",
    "add_flags",
    "configure",
    "flag_level",
    "old_level",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
CONTEXT_FIELDS = ("doc_id", "page", "job_id", "request_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: The old spellings of `ocrflux worker --loglevel` (kept as a hidden, deprecated alias).
_OLD_LEVELS = {"crit": "critical", "warn": "warning"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged (a redirect, a test's capture),
    not to the one it was when logging was configured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str | None = None, fmt: str | None = None) -> LogSettings:
    """Send log lines to stderr at `level` in `fmt` (`text` or `json`); None takes
    `OCRFLUX_LOG_LEVEL` / `OCRFLUX_LOG_FORMAT`. Calling it again replaces the handler it
    installed (others, such as a test runner's, stay). The choice is exported to the environment,
    so child processes (the API's conversion processes) that call `configure()` log the same
    way. An invalid value raises the settings' ValidationError."""
    from ocrflux.log_settings import LogSettings  # pydantic: only once a command runs

    given: dict[str, Any] = {"ocrflux_log_level": level, "ocrflux_log_format": fmt}
    settings = LogSettings(**{k: v for k, v in given.items() if v is not None})
    handler = _Stderr()
    if settings.ocrflux_log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    os.environ["OCRFLUX_LOG_LEVEL"] = settings.ocrflux_log_level
    os.environ["OCRFLUX_LOG_FORMAT"] = settings.ocrflux_log_format
    return settings


def _level_flag(text: str) -> str:
    return text.strip().lower()


def old_level(text: str) -> str:
    """A level in the new spelling from one of `--loglevel`'s (crit, error, warn, info, debug)."""
    name = text.strip().lower()
    return _OLD_LEVELS.get(name, name)


def add_flags(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """`--log-level` and `--debug`. On a subcommand they default to nothing, so that the same
    flags given before the subcommand (`ocrflux --debug convert ...`) still count."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-level",
        type=_level_flag,
        choices=LEVELS,
        metavar="LEVEL",
        default=None if top_level else argparse.SUPPRESS,
        help=f"{', '.join(LEVELS)} (else OCRFLUX_LOG_LEVEL, default info); "
        "OCRFLUX_LOG_FORMAT=json logs one JSON object per line",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="log at debug level, and show the traceback of a failure",
    )


def flag_level(args: argparse.Namespace) -> str | None:
    """The level the flags ask for (`--debug` wins), None when neither was given."""
    if getattr(args, "debug", False):
        return "debug"
    level: str | None = getattr(args, "log_level", None)
    return level
