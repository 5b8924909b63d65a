"""The deployment guide's API server: `python -m ocrflux.document_api_server_remote`.

Wiring only: settings from the environment (`VLLM_URL`, `VLLM_PORT`, `MODEL_NAME`, `API_HOST`,
`API_PORT`, `MAX_PAGE_RETRIES`, `SKIP_CROSS_PAGE_MERGE`, and ours, see
`connectors.api.settings`), then the aiohttp application of `connectors.api`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any


def run(overrides: Mapping[str, Any] | None = None) -> int:
    from aiohttp import web

    from connectors.api import ApiSettings, create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ApiSettings(**{k: v for k, v in (overrides or {}).items() if v is not None})
    web.run_app(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        access_log=logging.getLogger("ocrflux.api.access"),
        print=lambda message: logging.getLogger(__name__).info("%s", message),
    )
    return 0


if __name__ == "__main__":
    sys.exit(run())
