"""`create_app(settings)`: the HTTP API as an aiohttp application.

Resources (the spool folder for uploads, the guarded HTTP session, the vLLM client, the result
cache, the job service and the mode: direct, with its conversion processes, or kafka) are opened
and closed in `cleanup_ctx`, and handlers find them under the typed keys of `connectors.api.keys`.

Authentication: with `API_KEYS` set, every route needs one of the keys (`X-API-Key: KEY` or
`Authorization: Bearer KEY`) except `/health` and `/ready` (probes), and `/docs`,
`/openapi.json` unless `OCRFLUX_DOCS_PUBLIC=false` (the API's shape is not a secret, and the
docs page's "Authorize" button sends the key for the calls it makes). For scrapers, `/metrics`
can also be served without a key on a port of its own (`OCRFLUX_METRICS_PORT`, bound to
`OCRFLUX_METRICS_HOST`, loopback by default).

Every request gets an id (`request_ids`), answered in `X-Request-Id` and logged with its line.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from connectors.api import routes_guide, routes_jobs
from connectors.api.cache import open_cache
from connectors.api.callbacks import CallbackSender
from connectors.api.direct import DirectMode
from connectors.api.errors import ApiError, Unauthorized, error_response, response_for
from connectors.api.fetch import GuardedHttp, UrlPolicy
from connectors.api.jobs import JobStore
from connectors.api.kafka_mode import KafkaMode
from connectors.api.keys import HTTP, METRICS, MODE, OPENAPI, SERVICE, SETTINGS, SPOOLS, VLLM
from connectors.api.metrics import ApiMetrics, metrics_middleware
from connectors.api.models import ReadyResponse
from connectors.api.openapi import DOCS_HTML, build_openapi, swagger_ui_dir
from connectors.api.request_ids import echo_request_id, request_ids
from connectors.api.service import JobService
from connectors.api.settings import ApiSettings
from connectors.api.spool import SpoolFolder
from ocrflux.engines.factory import vllm_client
from ocrflux.errors import OcrfluxError
from ocrflux.version import installed_version

__all__ = ["create_app"]

_log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Routes a load balancer or orchestrator probes without credentials.
PROBE_PATHS = frozenset({"/health", "/ready"})
DOCS_PATHS = ("/docs", "/openapi.json")


def create_app(settings: ApiSettings) -> web.Application:
    metrics = ApiMetrics()
    app = web.Application(
        middlewares=[request_ids, metrics_middleware(metrics), _errors, _auth(settings)],
        client_max_size=1024 * 1024,  # JSON bodies; uploads are streamed and limited apart
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[OPENAPI] = build_openapi(version=installed_version(), auth=bool(settings.keys))
    app.on_response_prepare.append(echo_request_id)
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_metrics_port)
    routes(app)
    return app


def routes(app: web.Application) -> None:
    app.router.add_post("/convert/file", routes_guide.convert_file)
    app.router.add_post("/convert/url", routes_guide.convert_url)
    app.router.add_get("/health", routes_guide.health)
    app.router.add_get("/models", routes_guide.models)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", prometheus)
    app.router.add_post("/v1/jobs", routes_jobs.submit_job)
    app.router.add_get("/v1/jobs", routes_jobs.list_jobs)
    app.router.add_delete("/v1/jobs/{job_id}", routes_jobs.cancel_job)
    app.router.add_get("/v1/jobs/{job_id}", routes_jobs.job_status)
    app.router.add_get("/v1/jobs/{job_id}/events", routes_jobs.job_events)
    app.router.add_get("/v1/jobs/{job_id}/result", routes_jobs.job_result)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_static("/docs/static", swagger_ui_dir())


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    spools = SpoolFolder(settings.ocrflux_spool_dir)
    app[SPOOLS] = spools
    http = GuardedHttp(
        UrlPolicy(settings.fetch_allow), max_redirects=settings.ocrflux_fetch_max_redirects
    )
    app[HTTP] = http
    vllm = None if settings.ocrflux_engine == "local" else vllm_client(settings)
    app[VLLM] = vllm
    if vllm is not None:
        await vllm.start()
        health = await vllm.probe()
        _log.info("vLLM health at start: %s", health)
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    cache = open_cache(
        redis_url, entries=settings.ocrflux_cache_entries, ttl_s=settings.ocrflux_cache_ttl_s
    )
    store = JobStore(settings.ocrflux_jobs_retained)
    metrics.watch_jobs(store)
    callbacks = CallbackSender(
        http,
        attempts=settings.ocrflux_callback_attempts,
        backoff_s=settings.ocrflux_callback_backoff_s,
        timeout_s=settings.ocrflux_callback_timeout_s,
    )
    service = JobService(
        store,
        cache,
        callbacks,
        metrics,
        retry_after_s=settings.ocrflux_retry_after_s,
        max_upload_bytes_in_flight=settings.ocrflux_max_upload_bytes_in_flight,
    )
    app[SERVICE] = service
    mode: DirectMode | KafkaMode
    if settings.ocrflux_mode == "kafka":
        mode = KafkaMode(settings, store, callbacks)
        await mode.open()
    else:
        mode = DirectMode(settings, store, vllm, metrics)
    service.attach(mode)
    app[MODE] = mode
    _log.info(
        "OCRFlux API ready: mode %s, cache %s, auth %s",
        settings.ocrflux_mode,
        cache.name,
        "on" if settings.keys else "off (API_KEYS unset)",
    )
    try:
        yield
    finally:
        await mode.close()
        await callbacks.close()
        await service.close()
        await cache.close()
        if vllm is not None:
            await vllm.close()
        await http.close()
        spools.remove()


async def _metrics_port(app: web.Application) -> AsyncIterator[None]:
    """With `OCRFLUX_METRICS_PORT`: `/metrics` alone on a port of its own, without the API key
    (the main port's `/metrics` keeps needing one)."""
    settings = app[SETTINGS]
    if settings.ocrflux_metrics_port is None:
        yield
        return
    scrape = web.Application()
    scrape[METRICS] = app[METRICS]
    scrape.router.add_get("/metrics", prometheus)
    runner = web.AppRunner(scrape, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.ocrflux_metrics_host, settings.ocrflux_metrics_port)
        await site.start()
        host, port = runner.addresses[0][:2]
        _log.info("metrics on http://%s:%d/metrics", host, port)
        yield
    finally:
        await runner.cleanup()


# --- middlewares --------------------------------------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ApiError, OcrfluxError) as exc:
        return response_for(exc)
    except ConnectionError:  # the client went away (e.g. mid-upload): nobody to answer
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        return error_response(exc.status, f"http_{exc.status}", exc.reason, headers)
    except Exception:
        _log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


def _auth(settings: ApiSettings) -> Middleware:
    keys = [key.encode() for key in settings.keys]
    public_docs = settings.ocrflux_docs_public

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not keys or request.path in PROBE_PATHS:
            return await handler(request)
        if public_docs and request.path.startswith(DOCS_PATHS):
            return await handler(request)
        given = _presented_key(request)
        if given is None:
            raise Unauthorized("an API key is required (X-API-Key or Authorization: Bearer)")
        if not any(hmac.compare_digest(given.encode(), key) for key in keys):
            raise Unauthorized("the API key is not valid")
        return await handler(request)

    return middleware


def _presented_key(request: web.Request) -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


# --- small routes --------------------------------------------------------------------------------


async def ready(request: web.Request) -> web.Response:
    checks = await request.app[MODE].ready()
    body = ReadyResponse(ready=all(checks.values()), checks=checks)
    return web.json_response(body.model_dump(mode="json"), status=200 if body.ready else 503)


async def prometheus(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def docs(_request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html")
