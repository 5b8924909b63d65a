"""What the deploy helpers share: their error type and where their caches and state live."""

from __future__ import annotations

import os
from pathlib import Path


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, found or stopped."""


def cache_home() -> Path:
    """Where jars and broker state live: `OCRFLUX_HOME`; else `.cache/` of the source checkout
    when running from one (`make setup` installs it editable); else, for an installed package,
    the XDG cache folder (`$XDG_CACHE_HOME/ocrflux`, `~/.cache/ocrflux`), never site-packages."""
    configured = os.environ.get("OCRFLUX_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().resolve() / "ocrflux"
