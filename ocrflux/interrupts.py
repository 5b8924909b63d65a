"""Ctrl-C that ends a read-only command even when a library swallows the KeyboardInterrupt.

Python raises KeyboardInterrupt wherever the main thread happens to run Python code when SIGINT
arrives, and that can be a callback inside a C extension (confluent-kafka's logger, for one)
that does not pass exceptions on; a `results --follow` could then go on following. A command
with nothing to finish installs `end_after_interrupt`: the first SIGINT still raises
KeyboardInterrupt, so the command unwinds and exits 130 as usual, and if the process is still
running `grace_s` later it is ended with 130 anyway.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

from ocrflux.exit_codes import EXIT_INTERRUPTED

#: Long enough for a reader to close its Kafka consumer, short enough that nobody presses again.
DEFAULT_GRACE_S = 5.0


def end_after_interrupt(prog: str, grace_s: float = DEFAULT_GRACE_S) -> None:
    """Make SIGINT raise KeyboardInterrupt and end the process with 130 `grace_s` later, if it
    has not ended by then. Call it from the main thread."""

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        timer = threading.Timer(grace_s, _end, args=(prog, grace_s))
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def _end(prog: str, grace_s: float) -> None:
    # Straight to the file descriptor: the main thread may hold sys.stderr's lock.
    os.write(2, f"{prog}: interrupted; ended {grace_s:g} s after the signal\n".encode())
    os._exit(EXIT_INTERRUPTED)
