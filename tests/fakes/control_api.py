"""The OCRFlux-3B test double's control plane, served under `/_test/` next to the model API so a
test can drive a double running in another process. `control.py` is its client.

    POST   /_test/pages          {"png_base64" | "key", "natural_text", "primary_language",
                                  "is_rotation_valid", "rotation_correction", "is_table",
                                  "is_diagram"}  or  {"png_base64" | "key", "content"}  -> {key}
    POST   /_test/merges         {"previous": [...], "next": [...], "pairs": [[i, j], ...] | str}
    POST   /_test/table_merges   {"table1", "table2", "merged"}
    GET    /_test/faults         -> {"rules": [...]}
    POST   /_test/faults         {"kind", "rate", "count", "task", "pages", "seed",
                                  "retry_after"} -> {id}  (kinds and fields: faults.py)
    DELETE /_test/faults         clear every rule
    DELETE /_test/faults/{id}    remove one rule
    POST   /_test/health         {"mode": "ok" | "unavailable" | "outage" | "down"}
                                 (ocrflux_server.py; "outage": /health 503 and every model
                                 request's connection closed, until the mode is "ok" again)
    POST   /_test/config         {"capacity", "service_time", "stall_seconds", "paused"}
                                 (any subset; paused: the GPU starts nothing, requests queue)
    GET    /_test/stats          -> the stats object
    GET    /_test/requests       -> {"requests": [one record per finished chat request]}
    POST   /_test/wait           {"timeout": s, <stat name>: minimum, ...} -> 200 stats, or 408
    POST   /_test/reset          {"scope": ["truth", "faults", "stats", "health"]} (default all)

Errors are 400 `{"error": message}`.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.faults import FaultRule
from tests.fakes.gpu import ServiceTime
from tests.fakes.truth import page_answer

if TYPE_CHECKING:
    from tests.fakes.ocrflux_server import OcrfluxDouble

HEALTH_MODES = ("ok", "unavailable", "outage", "down")
RESET_SCOPES = ("truth", "faults", "stats", "health")
PAGE_FIELDS = (
    "primary_language",
    "is_rotation_valid",
    "rotation_correction",
    "is_table",
    "is_diagram",
)
MAX_WAIT_S = 120.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlError(Exception):
    pass


def add_control_routes(app: web.Application, double: OcrfluxDouble) -> None:
    routes: list[tuple[str, str, Callable[[OcrfluxDouble, Any, web.Request], Any]]] = [
        ("POST", "/_test/pages", _pages),
        ("POST", "/_test/merges", _merges),
        ("POST", "/_test/table_merges", _table_merges),
        ("GET", "/_test/faults", lambda d, _b, _r: {"rules": d.faults.rules()}),
        ("POST", "/_test/faults", _add_fault),
        ("DELETE", "/_test/faults", _clear_faults),
        ("DELETE", "/_test/faults/{rule_id}", _remove_fault),
        ("POST", "/_test/health", _health),
        ("POST", "/_test/config", _config),
        ("GET", "/_test/stats", lambda d, _b, _r: d.stats()),
        ("GET", "/_test/requests", lambda d, _b, _r: {"requests": list(d.request_log)}),
        ("POST", "/_test/wait", _wait),
        ("POST", "/_test/reset", _reset),
    ]
    for method, path, action in routes:
        app.router.add_route(method, path, _endpoint(double, action))


def _endpoint(
    double: OcrfluxDouble, action: Callable[[OcrfluxDouble, Any, web.Request], Any]
) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else {}
            result = action(double, body, request)
            if inspect.isawaitable(result):
                result = await result
        except (ControlError, ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result if result is not None else {"ok": True})

    return handler


def _require(body: Any, *names: str) -> None:
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    missing = [name for name in names if name not in body]
    if missing:
        raise ControlError(f"missing fields: {', '.join(missing)}")


def _pages(double: OcrfluxDouble, body: Any, _: web.Request) -> dict[str, Any]:
    _require(body)
    if "key" in body:
        page: bytes | str = body["key"]
    elif "png_base64" in body:
        try:
            page = base64.b64decode(body["png_base64"], validate=True)
        except binascii.Error as exc:
            raise ControlError(f"png_base64 is not base64: {exc}") from exc
    else:
        raise ControlError("a page needs png_base64 or key")
    if "content" in body:
        content = body["content"]
        if not isinstance(content, str):
            raise ControlError("content must be a string")
    else:
        _require(body, "natural_text")
        content = page_answer(
            body["natural_text"], **{name: body[name] for name in PAGE_FIELDS if name in body}
        )
    return {"key": double.truth.add_page(page, content)}


def _merges(double: OcrfluxDouble, body: Any, _: web.Request) -> None:
    _require(body, "previous", "next", "pairs")
    pairs = body["pairs"]
    if not isinstance(pairs, str):
        pairs = [(int(i), int(j)) for i, j in pairs]
    double.truth.add_merges(
        [str(e) for e in body["previous"]], [str(e) for e in body["next"]], pairs
    )


def _table_merges(double: OcrfluxDouble, body: Any, _: web.Request) -> None:
    _require(body, "table1", "table2", "merged")
    double.truth.add_table_merge(str(body["table1"]), str(body["table2"]), str(body["merged"]))


def _add_fault(double: OcrfluxDouble, body: Any, _: web.Request) -> dict[str, int]:
    _require(body, "kind")
    return {"id": double.faults.add(FaultRule.from_json(body))}


def _clear_faults(double: OcrfluxDouble, _b: Any, _r: web.Request) -> None:
    double.faults.clear()


def _remove_fault(double: OcrfluxDouble, _: Any, request: web.Request) -> dict[str, bool]:
    return {"removed": double.faults.remove(int(request.match_info["rule_id"]))}


def _health(double: OcrfluxDouble, body: Any, _: web.Request) -> None:
    _require(body, "mode")
    if body["mode"] not in HEALTH_MODES:
        raise ControlError(f"mode must be one of {', '.join(HEALTH_MODES)}")
    double.health = body["mode"]
    double.notify()


def _config(double: OcrfluxDouble, body: Any, _: web.Request) -> dict[str, Any]:
    _require(body)
    unknown = set(body) - {"capacity", "service_time", "stall_seconds", "paused"}
    if unknown:
        raise ControlError(f"unknown config fields: {', '.join(sorted(unknown))}")
    if "service_time" in body:
        double.gpu.service_time = ServiceTime.parse(body["service_time"])
    if "stall_seconds" in body:
        double.stall_seconds = float(body["stall_seconds"])
    if "capacity" in body:
        double.gpu.set_capacity(int(body["capacity"]))
    if "paused" in body:
        if not isinstance(body["paused"], bool):
            raise ControlError("paused must be true or false")
        double.gpu.set_paused(body["paused"])
    return {
        "capacity": double.gpu.capacity,
        "service_time": double.gpu.service_time.to_json(),
        "stall_seconds": double.stall_seconds,
        "paused": double.gpu.paused,
    }


async def _wait(double: OcrfluxDouble, body: Any, _: web.Request) -> web.Response:
    _require(body)
    timeout = min(float(body.get("timeout", 10.0)), MAX_WAIT_S)
    minimums = {name: int(value) for name, value in body.items() if name != "timeout"}
    stats = double.stats()
    unknown = [
        name
        for name in minimums
        if isinstance(stats.get(name), bool) or not isinstance(stats.get(name), int | float)
    ]
    if unknown:
        raise ControlError(f"not numeric stats: {', '.join(unknown)}")
    reached = await double.wait_for(minimums, timeout)
    return web.json_response(double.stats(), status=200 if reached else 408)


def _reset(double: OcrfluxDouble, body: Any, _: web.Request) -> None:
    _require(body)
    scopes = tuple(body.get("scope") or RESET_SCOPES)
    unknown = set(scopes) - set(RESET_SCOPES)
    if unknown:
        raise ControlError(f"unknown reset scopes: {', '.join(sorted(unknown))}")
    double.reset(scopes)
