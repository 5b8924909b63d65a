"""Completion callbacks: the job's final status POSTed to the caller's `callback_url`.

A callback is delivered when the receiver answers 2xx. Anything else (another status, a
refused connection, a timeout) is retried, at most `attempts` times in all, after a random wait
under a ceiling of 1x, 2x, 4x... `backoff_s`, capped at `MAX_BACKOFF_S` (full jitter, see
`ocrflux.backoff`). The URL goes through the same SSRF guard as `/convert/url`, at submission
and again on every attempt (after DNS resolution).
In direct mode callbacks are sent by the instance that converts the job, and pending ones are
abandoned when it stops (logged). In kafka mode the callback of a submission travels with the
document and any instance sends it (`callback_relay.py`); only a URL added by a later submission
of a document already under way is sent by the instance that took that submission.
"""

from __future__ import annotations

import asyncio
import logging

from connectors.api.errors import UrlRefused
from connectors.api.fetch import GuardedHttp
from connectors.api.jobs import Job
from connectors.api.models import json_body
from ocrflux.backoff import backoff_ceiling, full_jitter
from ocrflux.errors import FetchFailed

__all__ = ["CallbackSender"]

_log = logging.getLogger(__name__)

#: No wait between two attempts is longer than this.
MAX_BACKOFF_S = 60.0


class CallbackSender:
    def __init__(
        self, http: GuardedHttp, *, attempts: int, backoff_s: float, timeout_s: float
    ) -> None:
        self._http = http
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[bool]] = set()
        self.delivered = 0
        self.failed = 0

    def check(self, url: str) -> str:
        """The URL if it may be called back (scheme and literal address); else `UrlRefused`."""
        return str(self._http.policy.check_url(url))

    def job_finished(self, job: Job) -> None:
        for url in job.callback_urls:
            self.send(url, job)

    def send(self, url: str, job: Job) -> asyncio.Task[bool]:
        """Deliver in the background (`close` abandons what is still pending)."""
        task = asyncio.create_task(self.deliver(url, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def longest_delivery_s(self) -> float:
        """How long one delivery can take: every attempt timing out, every backoff waited."""
        waits = sum(
            backoff_ceiling(retry, self._backoff_s, MAX_BACKOFF_S)
            for retry in range(self._attempts - 1)
        )
        return self._attempts * self._timeout_s + waits

    async def deliver(self, url: str, job: Job) -> bool:
        """POST the job's status until a 2xx answer or the attempts run out (False)."""
        body = json_body(job.status())
        for attempt in range(1, self._attempts + 1):
            try:
                status = await self._http.post_json(url, body, timeout_s=self._timeout_s)
            except UrlRefused as exc:
                _log.warning("callback to %s refused: %s", url, exc.message)
                break
            except FetchFailed as exc:
                why = exc.message
            else:
                if 200 <= status < 300:
                    self.delivered += 1
                    return True
                why = f"HTTP {status}"
            if attempt == self._attempts:
                break
            delay = full_jitter(attempt - 1, self._backoff_s, MAX_BACKOFF_S)
            _log.info(
                "callback to %s failed (%s); attempt %d in %.1fs", url, why, attempt + 1, delay
            )
            await asyncio.sleep(delay)
        self.failed += 1
        _log.warning("callback to %s abandoned for job %s", url, body.get("job_id"))
        return False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            _log.warning("abandoning %d pending callbacks", len(self._tasks))
            await asyncio.gather(*self._tasks, return_exceptions=True)
