"""File names as text that can always be serialized and printed.

A POSIX file name is any byte string without NUL or "/". Python decodes the bytes that are not
valid in the file-system encoding to lone surrogates (surrogateescape), which JSON and pydantic
refuse and a terminal cannot show. Paths keep their original form for every file-system call;
only a name put in a record (`text_name`) or shown to a user (`display_name`) goes through here.
"""

from __future__ import annotations

import os
import sys

__all__ = ["display_name", "text_name"]

# C0 controls, DEL and C1 controls: a name holding them could break a line or drive the terminal.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def text_name(name: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """`name` as valid Unicode: each byte that does not decode becomes a `\\xNN` escape
    (b"caf\\xe9.pdf" on a UTF-8 system gives the ten characters `caf\\xe9.pdf`)."""
    given = os.fspath(name)
    if isinstance(given, bytes):
        raw = given
    else:
        try:
            raw = os.fsencode(given)
        except UnicodeEncodeError:  # a lone surrogate that no file-system decoding produced
            raw = given.encode("utf-8", "surrogatepass")
    return raw.decode(sys.getfilesystemencoding(), "backslashreplace")


def display_name(name: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """`text_name(name)` with control characters escaped too: safe on one terminal line."""
    return text_name(name).translate(_CONTROL_ESCAPES)
