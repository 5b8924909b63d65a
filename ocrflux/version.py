"""The version of this installation: the package metadata's, the one source for `ocrflux
--version` and the API (`/openapi.json`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["DISTRIBUTION", "VERSION"]

#: The distribution name in pyproject.toml.
DISTRIBUTION = "ocrflux-stream"


def _installed_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # a bare checkout on sys.path, never installed
        return "0+unknown"


VERSION = _installed_version()
