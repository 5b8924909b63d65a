"""Clients for the OCRFlux-3B test double's control plane (`/_test/...`, see control_api.py).

`ControlClient` is synchronous (urllib, no event loop needed); `AsyncControlClient` has the same
methods as coroutines (aiohttp). Async tests must use the async one for anything that waits
(`wait_for`): a blocking call would stall their own event loop and the requests on it.

Pages are given as image bytes (any encoding; the double identifies pixels) or as the 64-hex key
that `image_key` computes and the register calls return.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.fakes.gpu import ServiceTime
from tests.fakes.truth import as_key, image_key

__all__ = ["AsyncControlClient", "ControlClient", "ControlError", "image_key"]

DEFAULT_TIMEOUT_S = 30.0


class ControlError(Exception):
    """The control plane refused a call (status and the server's message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    body: Any = None
    extract: Callable[[Any], Any] = lambda answer: None
    timeout: float = DEFAULT_TIMEOUT_S


def _page_field(page: bytes | str) -> dict[str, str]:
    if isinstance(page, str):
        return {"key": as_key(page)}
    return {"png_base64": base64.b64encode(page).decode("ascii")}


def _service_time(value: float | ServiceTime | dict[str, Any]) -> dict[str, Any]:
    return ServiceTime.parse(value).to_json()


class _Calls:
    """What each control method sends; the two clients only differ in how they send it."""

    @staticmethod
    def register_page(
        page: bytes | str,
        natural_text: str | None,
        *,
        primary_language: str | None = "en",
        is_rotation_valid: bool = True,
        rotation_correction: int = 0,
        is_table: bool = False,
        is_diagram: bool = False,
    ) -> _Call:
        body = {
            **_page_field(page),
            "natural_text": natural_text,
            "primary_language": primary_language,
            "is_rotation_valid": is_rotation_valid,
            "rotation_correction": rotation_correction,
            "is_table": is_table,
            "is_diagram": is_diagram,
        }
        return _Call("POST", "/_test/pages", body, lambda answer: answer["key"])

    @staticmethod
    def register_page_raw(page: bytes | str, content: str) -> _Call:
        body = {**_page_field(page), "content": content}
        return _Call("POST", "/_test/pages", body, lambda answer: answer["key"])

    @staticmethod
    def register_merges(
        previous: Sequence[str],
        next_elements: Sequence[str],
        pairs: Iterable[tuple[int, int]] | str,
    ) -> _Call:
        wire = pairs if isinstance(pairs, str) else [[i, j] for i, j in pairs]
        body = {"previous": list(previous), "next": list(next_elements), "pairs": wire}
        return _Call("POST", "/_test/merges", body)

    @staticmethod
    def register_table_merge(table1: str, table2: str, merged: str) -> _Call:
        body = {"table1": table1, "table2": table2, "merged": merged}
        return _Call("POST", "/_test/table_merges", body)

    @staticmethod
    def add_fault(
        kind: str,
        *,
        rate: float | None = None,
        count: int | None = None,
        task: str | None = None,
        pages: Iterable[bytes | str] = (),
        seed: int = 0,
        retry_after: float | str | None = None,
    ) -> _Call:
        body = {
            "kind": kind,
            "rate": rate,
            "count": count,
            "task": task,
            "pages": [as_key(page) for page in pages],
            "seed": seed,
            "retry_after": retry_after,
        }
        return _Call("POST", "/_test/faults", body, lambda answer: answer["id"])

    @staticmethod
    def remove_fault(rule_id: int) -> _Call:
        return _Call(
            "DELETE", f"/_test/faults/{int(rule_id)}", None, lambda answer: answer["removed"]
        )

    @staticmethod
    def clear_faults() -> _Call:
        return _Call("DELETE", "/_test/faults")

    @staticmethod
    def faults() -> _Call:
        return _Call("GET", "/_test/faults", None, lambda answer: answer["rules"])

    @staticmethod
    def set_health(mode: str) -> _Call:
        return _Call("POST", "/_test/health", {"mode": mode})

    @staticmethod
    def configure(
        *,
        capacity: int | None = None,
        service_time: float | ServiceTime | dict[str, Any] | None = None,
        stall_seconds: float | None = None,
        paused: bool | None = None,
    ) -> _Call:
        body: dict[str, Any] = {}
        if paused is not None:
            body["paused"] = paused
        if capacity is not None:
            body["capacity"] = capacity
        if service_time is not None:
            body["service_time"] = _service_time(service_time)
        if stall_seconds is not None:
            body["stall_seconds"] = stall_seconds
        return _Call("POST", "/_test/config", body, lambda answer: answer)

    @staticmethod
    def stats() -> _Call:
        return _Call("GET", "/_test/stats", None, lambda answer: answer)

    @staticmethod
    def requests() -> _Call:
        return _Call("GET", "/_test/requests", None, lambda answer: answer["requests"])

    @staticmethod
    def wait_for(*, timeout: float = 10.0, **minimums: int) -> _Call:
        return _Call(
            "POST",
            "/_test/wait",
            {"timeout": timeout, **minimums},
            lambda answer: answer,
            timeout=timeout + DEFAULT_TIMEOUT_S,
        )

    @staticmethod
    def reset(*scopes: str) -> _Call:
        return _Call("POST", "/_test/reset", {"scope": list(scopes)} if scopes else {})


def _check(status: int, answer: Any, call: _Call) -> Any:
    if call.path == "/_test/wait" and status == 408:
        raise TimeoutError(f"the double did not reach {call.body} in time; stats: {answer}")
    if status >= 300:
        message = answer.get("error", answer) if isinstance(answer, dict) else answer
        raise ControlError(status, str(message))
    return call.extract(answer)


class ControlClient:
    """Synchronous control of a double at `url` (its base URL, no trailing slash).

    Methods: register_page, register_page_raw, register_merges, register_table_merge,
    add_fault, remove_fault, clear_faults, faults, set_health, configure, stats, requests,
    wait_for, reset (signatures as in `_Calls`).
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        # Loopback only: never route control calls through an http_proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _send(self, call: _Call) -> Any:
        data = None if call.body is None else json.dumps(call.body).encode()
        request = urllib.request.Request(
            self.url + call.path,
            data=data,
            method=call.method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=call.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return _check(status, json.loads(raw) if raw else None, call)

    def register_page(
        self,
        page: bytes | str,
        natural_text: str | None,
        *,
        primary_language: str | None = "en",
        is_rotation_valid: bool = True,
        rotation_correction: int = 0,
        is_table: bool = False,
        is_diagram: bool = False,
    ) -> str:
        call = _Calls.register_page(
            page,
            natural_text,
            primary_language=primary_language,
            is_rotation_valid=is_rotation_valid,
            rotation_correction=rotation_correction,
            is_table=is_table,
            is_diagram=is_diagram,
        )
        return self._send(call)

    def register_page_raw(self, page: bytes | str, content: str) -> str:
        return self._send(_Calls.register_page_raw(page, content))

    def register_merges(
        self,
        previous: Sequence[str],
        next_elements: Sequence[str],
        pairs: Iterable[tuple[int, int]] | str,
    ) -> None:
        self._send(_Calls.register_merges(previous, next_elements, pairs))

    def register_table_merge(self, table1: str, table2: str, merged: str) -> None:
        self._send(_Calls.register_table_merge(table1, table2, merged))

    def add_fault(
        self,
        kind: str,
        *,
        rate: float | None = None,
        count: int | None = None,
        task: str | None = None,
        pages: Iterable[bytes | str] = (),
        seed: int = 0,
        retry_after: float | str | None = None,
    ) -> int:
        call = _Calls.add_fault(
            kind,
            rate=rate,
            count=count,
            task=task,
            pages=pages,
            seed=seed,
            retry_after=retry_after,
        )
        return self._send(call)

    def remove_fault(self, rule_id: int) -> bool:
        return self._send(_Calls.remove_fault(rule_id))

    def clear_faults(self) -> None:
        self._send(_Calls.clear_faults())

    def faults(self) -> list[dict[str, Any]]:
        return self._send(_Calls.faults())

    def set_health(self, mode: str) -> None:
        self._send(_Calls.set_health(mode))

    def configure(
        self,
        *,
        capacity: int | None = None,
        service_time: float | ServiceTime | dict[str, Any] | None = None,
        stall_seconds: float | None = None,
        paused: bool | None = None,
    ) -> dict[str, Any]:
        call = _Calls.configure(
            capacity=capacity, service_time=service_time, stall_seconds=stall_seconds, paused=paused
        )
        return self._send(call)

    def stats(self) -> dict[str, Any]:
        return self._send(_Calls.stats())

    def requests(self) -> list[dict[str, Any]]:
        return self._send(_Calls.requests())

    def wait_for(self, *, timeout: float = 10.0, **minimums: int) -> dict[str, Any]:
        return self._send(_Calls.wait_for(timeout=timeout, **minimums))

    def reset(self, *scopes: str) -> None:
        self._send(_Calls.reset(*scopes))


class AsyncControlClient:
    """The same methods as `ControlClient`, as coroutines; usable from any event loop.

    Without a `session`, each call opens and closes its own (so one client serves every loop).
    """

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self._session = session

    async def _send(self, call: _Call) -> Any:
        if self._session is not None:
            return await self._send_on(self._session, call)
        async with aiohttp.ClientSession() as session:
            return await self._send_on(session, call)

    async def _send_on(self, session: aiohttp.ClientSession, call: _Call) -> Any:
        timeout = aiohttp.ClientTimeout(total=call.timeout)
        async with session.request(
            call.method, self.url + call.path, json=call.body, timeout=timeout
        ) as response:
            raw = await response.read()
            return _check(response.status, json.loads(raw) if raw else None, call)

    async def register_page(
        self,
        page: bytes | str,
        natural_text: str | None,
        *,
        primary_language: str | None = "en",
        is_rotation_valid: bool = True,
        rotation_correction: int = 0,
        is_table: bool = False,
        is_diagram: bool = False,
    ) -> str:
        call = _Calls.register_page(
            page,
            natural_text,
            primary_language=primary_language,
            is_rotation_valid=is_rotation_valid,
            rotation_correction=rotation_correction,
            is_table=is_table,
            is_diagram=is_diagram,
        )
        return await self._send(call)

    async def register_page_raw(self, page: bytes | str, content: str) -> str:
        return await self._send(_Calls.register_page_raw(page, content))

    async def register_merges(
        self,
        previous: Sequence[str],
        next_elements: Sequence[str],
        pairs: Iterable[tuple[int, int]] | str,
    ) -> None:
        await self._send(_Calls.register_merges(previous, next_elements, pairs))

    async def register_table_merge(self, table1: str, table2: str, merged: str) -> None:
        await self._send(_Calls.register_table_merge(table1, table2, merged))

    async def add_fault(
        self,
        kind: str,
        *,
        rate: float | None = None,
        count: int | None = None,
        task: str | None = None,
        pages: Iterable[bytes | str] = (),
        seed: int = 0,
        retry_after: float | str | None = None,
    ) -> int:
        call = _Calls.add_fault(
            kind,
            rate=rate,
            count=count,
            task=task,
            pages=pages,
            seed=seed,
            retry_after=retry_after,
        )
        return await self._send(call)

    async def remove_fault(self, rule_id: int) -> bool:
        return await self._send(_Calls.remove_fault(rule_id))

    async def clear_faults(self) -> None:
        await self._send(_Calls.clear_faults())

    async def faults(self) -> list[dict[str, Any]]:
        return await self._send(_Calls.faults())

    async def set_health(self, mode: str) -> None:
        await self._send(_Calls.set_health(mode))

    async def configure(
        self,
        *,
        capacity: int | None = None,
        service_time: float | ServiceTime | dict[str, Any] | None = None,
        stall_seconds: float | None = None,
        paused: bool | None = None,
    ) -> dict[str, Any]:
        call = _Calls.configure(
            capacity=capacity, service_time=service_time, stall_seconds=stall_seconds, paused=paused
        )
        return await self._send(call)

    async def stats(self) -> dict[str, Any]:
        return await self._send(_Calls.stats())

    async def requests(self) -> list[dict[str, Any]]:
        return await self._send(_Calls.requests())

    async def wait_for(self, *, timeout: float = 10.0, **minimums: int) -> dict[str, Any]:
        return await self._send(_Calls.wait_for(timeout=timeout, **minimums))

    async def reset(self, *scopes: str) -> None:
        await self._send(_Calls.reset(*scopes))
