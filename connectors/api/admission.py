"""Admission: whether the server takes a submission, decided before its body is read.

A submission is admitted when the mode can take one more job (counting the submissions admitted
and still being received) and, for an upload, when its bytes fit in the upload budget next to the
uploads already in flight. Otherwise it gets 503 with `Retry-After` at once: a saturated server
neither reads nor stores a body it would refuse. The `Ticket` keeps the job slot and the bytes
until the request has handed its document over (`JobService.submit` returned).

One upload is always admitted when no other is in flight, so a budget below `MAX_FILE_BYTES`
slows uploads down to one at a time instead of refusing the largest ones for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from connectors.api.errors import Saturated

__all__ = ["Admission", "Ticket"]


class Admission:
    def __init__(
        self,
        *,
        capacity: Callable[[], int],
        max_upload_bytes: int,
        retry_after_s: int,
        on_refusal: Callable[[], None] = lambda: None,
    ) -> None:
        """`capacity()`: how many more jobs the mode may start now."""
        self._capacity = capacity
        self._max_upload_bytes = max_upload_bytes
        self._retry_after_s = retry_after_s
        self._on_refusal = on_refusal
        self.slots = 0
        self.upload_bytes = 0

    def admit(self, upload_bytes: int = 0) -> Ticket:
        """A ticket for one submission sending up to `upload_bytes`; else `Saturated`."""
        if self.slots >= self._capacity():
            self._refuse("the conversion pipeline is saturated; retry later")
        if self.upload_bytes and self.upload_bytes + upload_bytes > self._max_upload_bytes:
            self._refuse(
                f"{self.upload_bytes} upload bytes are in flight (the limit is "
                f"{self._max_upload_bytes}); retry later"
            )
        self.slots += 1
        self.upload_bytes += upload_bytes
        return Ticket(self, upload_bytes)

    def _refuse(self, detail: str) -> None:
        self._on_refusal()
        raise Saturated(detail, self._retry_after_s)


class Ticket:
    """One admitted submission's slot and bytes; released once (also as a context manager)."""

    def __init__(self, admission: Admission, upload_bytes: int) -> None:
        self._admission: Admission | None = admission
        self._upload_bytes = upload_bytes

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.slots -= 1
            admission.upload_bytes -= self._upload_bytes

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
