"""The deployment guide's API server: `python -m ocrflux.document_api_server_remote`.

Wiring only: settings from the environment (`VLLM_URL`, `VLLM_PORT`, `MODEL_NAME`, `API_HOST`,
`API_PORT`, `MAX_PAGE_RETRIES`, `SKIP_CROSS_PAGE_MERGE`, and ours, see
`connectors.api.settings`), then the aiohttp application of `connectors.api`. Logging
(`OCRFLUX_LOG_LEVEL`, `OCRFLUX_LOG_FORMAT`) and the exit status of a failure to start are the
`ocrflux` command's (`ocrflux api`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from ocrflux import logs
from ocrflux.failures import run_guarded


def run(overrides: Mapping[str, Any] | None = None) -> int:
    """Serve until SIGTERM or SIGINT (exit status 0); logging is configured by the caller."""
    from aiohttp import web

    from connectors.api import ApiSettings, create_app
    from connectors.api.request_ids import AccessLogger

    settings = ApiSettings(**{k: v for k, v in (overrides or {}).items() if v is not None})
    web.run_app(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        access_log=logging.getLogger("ocrflux.api.access"),
        access_log_class=AccessLogger,
        print=lambda message: logging.getLogger(__name__).info("%s", message),
    )
    return 0


def main() -> int:
    def start() -> int:
        logs.configure()
        return run()

    return run_guarded("ocrflux api", start)


if __name__ == "__main__":
    sys.exit(main())
