"""The version of this installation: the package metadata's, the one source for `ocrflux
--version` and the API (`/openapi.json`).

Read on first use, not on import: `importlib.metadata` costs a command about 70 ms of start-up,
and only `--version` and the API need it."""

from __future__ import annotations

from functools import cache

__all__ = ["DISTRIBUTION", "installed_version"]

#: The distribution name in pyproject.toml.
DISTRIBUTION = "ocrflux-stream"


@cache
def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # a bare checkout on sys.path, never installed
        return "0+unknown"
