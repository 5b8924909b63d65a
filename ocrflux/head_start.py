"""`ocrflux convert`'s pages rendered while the command is still loading: its head start.

A one-shot `ocrflux convert` spends about 0.3 s of one core importing what it runs before it can
send the model its first page (the HTTP client, pydantic's models, settings). `HeadStart.fork`
forks a process as soon as the command line is parsed: the child imports the renderer
(PyMuPDF, Pillow) at once, on the other core, while the parent reads its settings and input.
The parent then hands the child its document (`HeadStart.render`: the bytes, the render mode
and limits the direct driver will open it with, the page selection); the child opens it
(`open_document`) and renders the selected pages in order into a pipe while the parent imports
the driver and the HTTP client. The driver takes the pages from the pipe (`HeadStartDocument`)
and loads PyMuPDF itself only for what they do not carry: a fallback page's text layer, figure
crops, and pages the child did not deliver (it died, say on a page that crashes MuPDF: the
parent renders from there in place, as it would have without a head start).

Same results either way: the child runs the same code on the same bytes; an input it rejects
comes back as that `InputError`, a page it cannot render as that page's. Documents the render
pool takes (`PoolRule`) are declined once opened, and so is a head start whose render mode is
not the one the conversion asks for (`auto` chose the other engine): the parent then opens the
document itself. A child is forked only where `os.fork` exists and from a process with no other
thread (a fork copies none, and a lock one held would stay held); one never given a document
ends when the parent closes it, or exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ocrflux import collector
from ocrflux.errors import InputError
from ocrflux.pages import OpenOptions, PoolRule, RenderedPage, TableMode, page_indices
from ocrflux.sniff import DocumentKind
from schemas.page_ranges import PageRanges

if TYPE_CHECKING:
    from PIL import Image

    from ocrflux.render import Document
    from schemas.results import ErrorInfo

__all__ = ["HeadStart", "HeadStartDocument"]

_log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
#: The page pipe's capacity asked for (Linux's default limit for any user, `pipe-max-size`).
PIPE_BYTES = 1024 * 1024
#: How long closing waits for the thread handing the child its document (it ends as soon as
#: the child does).
_HAND_OVER_JOIN_S = 5.0


@dataclass(frozen=True)
class _Job:
    """The document the child is to render; its `size` bytes follow on the pipe."""

    options: OpenOptions
    pages: PageRanges | None
    in_pool: PoolRule
    size: int


@dataclass(frozen=True)
class _Opened:
    """What the child tells of the document it opened."""

    kind: DocumentKind
    page_count: int
    warnings: list[ErrorInfo]
    defer_text_layer: bool  # as asked, except for a repaired PDF (`Document.defer_text_layer`)


class HeadStart:
    """The parent's end of a head start: the child's PID, the pipe its document goes out on
    and the one its pages come back on."""

    def __init__(self, pid: int, jobs: int, pipe: BinaryIO) -> None:
        self.pid = pid
        self.data: bytes | None = None  # the document handed over (`render`)
        self.options: OpenOptions | None = None
        self._jobs: int | None = jobs
        self._hand_over: threading.Thread | None = None
        self._pipe = pipe
        self._lock = threading.Lock()  # pages are taken from executor threads
        self._received: dict[int, RenderedPage | InputError] = {}
        self._ended = False

    @classmethod
    def fork(cls) -> HeadStart | None:
        """Fork the child, which imports the renderer and waits for its document (`render`);
        None where a fork is not safe here. A caller that paused the collector
        (`ocrflux.collector`, as `ocrflux convert` does) has the child resume it once the
        renderer is loaded: no collection walks the objects they share meanwhile."""
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        job_read, job_write = os.pipe()
        page_read, page_write = os.pipe()
        _widen(page_write)
        try:
            pid = os.fork()
        except OSError as exc:  # no memory or process left for it: render here instead
            for fd in (job_read, job_write, page_read, page_write):
                os.close(fd)
            _log.warning("no head start for the pages: %s", exc)
            return None
        if pid == 0:  # the child: it never returns
            status = 1
            try:
                os.close(job_write)
                os.close(page_read)
                # The command's output is the parent's alone (the child may log on stderr).
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                # Ctrl-C reaches the whole process group: the parent decides what stops.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                with os.fdopen(job_read, "rb") as jobs, os.fdopen(page_write, "wb") as pipe:
                    _child(jobs, pipe)
                status = 0
            except BrokenPipeError:
                pass  # the parent stopped reading: nothing is waiting for the pages
            except BaseException:
                _log.exception("the head-start render process failed")
            finally:
                os._exit(status)
        os.close(job_read)
        os.close(page_write)
        return cls(pid, job_write, os.fdopen(page_read, "rb"))

    def render(
        self, data: bytes, options: OpenOptions, *, pages: PageRanges | None, in_pool: PoolRule
    ) -> None:
        """Hand the child `data` to open with `options` and render `pages` of, unless the
        render pool would take it (`in_pool`). Returns at once: a thread writes the document
        to the child, which may still be importing the renderer."""
        jobs, self._jobs = self._jobs, None
        if jobs is None:
            raise RuntimeError("the head start was given its document already, or closed")
        self.data, self.options = data, options
        job = _framed(_Job(options, pages, in_pool, len(data)))
        self._hand_over = threading.Thread(
            target=_write_all,
            args=(jobs, [job, data]),
            name="head-start-document",
            daemon=True,
        )
        self._hand_over.start()

    def open(self, data: bytes, options: OpenOptions) -> HeadStartDocument | None:
        """The document as the child opened it (blocking: run it in an executor), or None when
        it was handed another document or none, declined it, opened it otherwise than `options`
        ask, or ended without a word (the caller opens the document itself). Raises the
        `InputError` it opened with."""
        if data is not self.data or options != self.options:
            self.close()
            return None
        message = self._read()
        if isinstance(message, InputError):
            self.close()
            raise message
        if not isinstance(message, _Opened):
            _log.debug("the head start (pid %d) left the document to this process", self.pid)
            self.close()
            return None
        _log.debug("the document's pages come from the head start (pid %d)", self.pid)
        return HeadStartDocument(self, message, data, options)

    def take(self, index: int) -> RenderedPage | InputError | None:
        """Page `index` as the child rendered it (blocking), None if it ended without it."""
        with self._lock:
            while index not in self._received:
                message = None if self._ended else self._read()
                if not isinstance(message, tuple):
                    if not self._ended:
                        _log.warning(
                            "the head-start render process ended before page %d: the pages "
                            "from there render in this process",
                            index + 1,
                        )
                    self._ended = True
                    return None
                number, page = message
                self._received[number] = page
            return self._received.pop(index)

    def close(self) -> None:
        """End the child if it still runs, reap it and stop reading (idempotent)."""
        pid, self.pid = self.pid, 0
        if pid == 0:
            return
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                # It holds nothing worth finishing; killed first, so that a thread waiting
                # for a page (holding the lock) sees the pipe end, and the one handing it the
                # document sees its pipe break.
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # reaped already (a SIGCHLD handler of the embedding program)
        if self._hand_over is not None:
            self._hand_over.join(_HAND_OVER_JOIN_S)
        jobs, self._jobs = self._jobs, None
        if jobs is not None:
            os.close(jobs)
        with self._lock:
            self._ended = True
            self._received.clear()
            self._pipe.close()

    def _read(self) -> Any:
        """The next message; None at the end of the pipe (the child exited or died)."""
        try:
            return _read_message(self._pipe)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
            _log.warning("the head-start render process's pipe broke: %r", exc)
            return None


class HeadStartDocument:
    """The opened document for the direct driver, pages from the head start: what
    `ocrflux.render.Document` offers the driver, PyMuPDF loaded only for what pages lack."""

    def __init__(
        self, head_start: HeadStart, opened: _Opened, data: bytes, options: OpenOptions
    ) -> None:
        self.kind = opened.kind
        self.page_count = opened.page_count
        self.warnings = opened.warnings
        self.text_layer_tables: TableMode = options.text_layer_tables
        self.defer_text_layer = opened.defer_text_layer
        self._head_start = head_start
        self._data = data
        self._options = options
        self._own: Document | None = None
        self._own_lock = threading.Lock()
        self._closed = False

    def page_indices(self, pages: PageRanges | None = None) -> list[int]:
        return page_indices(pages, self.page_count)

    def render_page(self, index: int) -> RenderedPage:
        page = self._head_start.take(index)
        if page is None:
            return self._document().render_page(index)
        if isinstance(page, InputError):
            raise page
        return page

    def text_layer(self, index: int) -> str | None:
        return self._document().text_layer(index)

    def render_image(self, index: int, scale: float) -> Image.Image:
        return self._document().render_image(index, scale)

    def close(self) -> None:
        with self._own_lock:
            self._closed = True
            own, self._own = self._own, None
        self._head_start.close()
        if own is not None:
            own.close()

    def _document(self) -> Document:
        """The parent's own copy of the document, opened on first need."""
        with self._own_lock:
            if self._closed:
                raise ValueError("the document is closed")
            if self._own is None:
                self._own = self._options.open(self._data)
            return self._own


def _child(jobs: BinaryIO, pipe: BinaryIO) -> None:
    """The child's work: load the renderer, then render the document it is handed (if any)."""
    import ocrflux.render  # noqa: F401  (loads while the parent reads its settings and input)

    collector.resume()  # it renders pages from here: garbage worth collecting
    job = _read_message(jobs)
    if not isinstance(job, _Job):
        return  # the parent closed the pipe without a document: nothing to do
    data = jobs.read(job.size)
    if len(data) < job.size:
        return
    _render_into(pipe, data, job)


def _render_into(pipe: BinaryIO, data: bytes, job: _Job) -> None:
    """Open, then every selected page in order (or decline)."""
    try:
        document = job.options.open(data)
        indices = document.page_indices(job.pages)
    except InputError as exc:
        _send(pipe, exc)
        return
    if job.in_pool(document.kind, len(indices)):
        _send(pipe, None)
        return
    opened = _Opened(
        document.kind,
        document.page_count,
        document.warnings,
        document.defer_text_layer,
    )
    _send(pipe, opened)
    for index in indices:
        page: RenderedPage | InputError
        try:
            page = document.render_page(index)
        except InputError as exc:
            page = exc
        _send(pipe, (index, page))


def _widen(fd: int) -> None:
    """Let the pipe hold a small document's pages (about 40 KB each): the child renders them
    all while the parent is still importing, instead of one page ahead of it."""
    import fcntl  # POSIX, as `os.fork` is

    setter = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux
    if setter is None:
        return
    # Refused above /proc/sys/fs/pipe-max-size for this user: the default size then.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, setter, PIPE_BYTES)


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Write `parts` to `fd`, then close it; a child that has gone just ends the writing."""
    try:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view) :]
    except OSError:
        pass  # the child ended (killed by `close`, or it died): the parent renders instead
    finally:
        os.close(fd)


def _read_message(pipe: BinaryIO) -> Any:
    """The next length-prefixed pickled message; None at the end of the pipe."""
    head = pipe.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    body = pipe.read(length)
    if len(body) < length:
        return None
    return pickle.loads(body)


def _framed(message: object) -> bytes:
    """`message` as `_read_message` reads it: its length, then its pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def _send(pipe: BinaryIO, message: object) -> None:
    pipe.write(_framed(message))
    pipe.flush()
