"""Spool files: a caller's document on disk, never whole in the API process's memory.

An upload is written to a file as it arrives, hashed on the way (SHA-256: the content half of the
job id) and its first bytes kept for sniffing; the conversion reads the file when it starts. The
writes and the hashing run in a thread, off the event loop.

A spool is shared by the request that received it and the job that converts it. Each holder
calls `release()` once; the last one removes the file, whatever ended the request or the job.
Every file lives in the app's own folder (`SpoolFolder`), removed when the app stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["SNIFF_BYTES", "Spool", "SpoolFolder", "SpoolWriter"]

_log = logging.getLogger(__name__)

#: Leading bytes kept for `ocrflux.sniff`, which looks at the first 1,024.
SNIFF_BYTES = 4096


class Spool:
    """One document's bytes in a file; `release()` by each holder, the last removes it."""

    def __init__(self, path: Path, size: int, sha256: str, head: bytes) -> None:
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.head = head
        self._holders = 1

    def hold(self) -> Spool:
        """One more holder (a job that will read the file later)."""
        if self._holders == 0:
            raise RuntimeError(f"spool {self.path.name} was already removed")
        self._holders += 1
        return self

    def release(self) -> None:
        if self._holders == 0:
            return
        self._holders -= 1
        if self._holders == 0:
            self.path.unlink(missing_ok=True)

    async def read(self) -> bytes:
        return await asyncio.to_thread(self.path.read_bytes)


class SpoolWriter:
    """Writes one spool file chunk by chunk; `finish()` gives the `Spool`, `discard()` removes
    the file (call one of the two)."""

    def __init__(self, folder: Path) -> None:
        descriptor, name = tempfile.mkstemp(dir=folder, suffix=".upload")
        self.path = Path(name)
        self._file = os.fdopen(descriptor, "wb")
        self._hash = hashlib.sha256()
        self._head = bytearray()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._write, chunk)

    def _write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)
        if len(self._head) < SNIFF_BYTES:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]

    async def finish(self) -> Spool:
        await asyncio.to_thread(self._file.close)
        return Spool(self.path, self.size, self._hash.hexdigest(), bytes(self._head))

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class SpoolFolder:
    """The app's folder of spool files, inside `root` (the system's temp folder by default)."""

    def __init__(self, root: str | None = None) -> None:
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"ocrflux-api-{os.getpid()}-", dir=root or None))

    def writer(self) -> SpoolWriter:
        return SpoolWriter(self.path)

    async def spool(self, data: bytes) -> Spool:
        """Bytes already in memory (a downloaded URL) into a spool, so a queued job does not
        keep them there."""
        writer = self.writer()
        try:
            await writer.write(data)
            return await writer.finish()
        except BaseException:
            writer.discard()
            raise

    def remove(self) -> None:
        leftovers = [p.name for p in self.path.glob("*.upload")]
        if leftovers:
            _log.warning("removing %d spool files still held at exit", len(leftovers))
        shutil.rmtree(self.path, ignore_errors=True)
