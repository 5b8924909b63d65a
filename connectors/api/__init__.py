"""The HTTP API: the deployment guide's endpoints (`/convert/file`, `/convert/url`, `/health`,
`/models`, `/docs`) plus asynchronous jobs with progress events and callbacks, in two modes:
`direct` (the core in this server's conversion processes) and `kafka` (the stream processor
does the work).

    app.py            create_app(settings): middlewares, routes, resources in cleanup_ctx
    settings.py       ApiSettings: the guide's environment variables and ours
    models.py         the payloads (pydantic), the single source of /openapi.json
    routes_guide.py   the guide's endpoints        routes_jobs.py   /v1/jobs...
    service.py        submission: job id, cache, reuse; jobs.py: job state machine + store
    admission.py      503 before the body is read: job slots and upload bytes in flight
    direct.py         direct mode                  kafka_mode.py    kafka mode
    conversions.py    direct mode's conversion processes; conversion_worker.py: their side
    fetch.py          SSRF-guarded downloads and callbacks; callbacks.py: retries with backoff
    uploads.py        multipart and JSON bodies within limits; spool.py: uploads on disk
    cache.py          result cache (Redis or in-process LRU); metrics.py: Prometheus
    openapi.py        the OpenAPI document and the offline Swagger UI page

Must not live here: any part of the OCRFlux algorithm (it is called through `ocrflux.convert`).
"""

from connectors.api.app import create_app
from connectors.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
