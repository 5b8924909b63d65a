"""`LogSettings`: the two logging variables, read by `ocrflux.logs.configure`.

Apart from `ocrflux.logs` so that building the command line (`ocrflux --version`, `--help`)
does not import pydantic; only configuring logging does.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from ocrflux.settings_base import OcrfluxSettings

__all__ = ["Level", "LogSettings"]

Level = Literal["debug", "info", "warning", "error", "critical"]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class LogSettings(OcrfluxSettings):
    ocrflux_log_level: Annotated[Level, BeforeValidator(_lower)] = "info"
    ocrflux_log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"

    @property
    def level(self) -> int:
        return logging.getLevelNamesMapping()[self.ocrflux_log_level.upper()]
