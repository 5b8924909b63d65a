"""PNG files written from raw scanlines, without Pillow: page renders (`ocrflux.render`) and the
blank image of the text-only prompts (`ocrflux.prompts`) share this container code."""

from __future__ import annotations

import struct
import zlib

__all__ = ["GREY", "RGB", "png_file"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types (IHDR): 8-bit grey and 8-bit RGB.
GREY, RGB = 0, 2


def png_file(width: int, height: int, colour_type: int, deflated_scanlines: bytes) -> bytes:
    """An 8-bit PNG of one IDAT chunk: `deflated_scanlines` is the zlib stream of the rows, each
    led by its filter byte."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", deflated_scanlines),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(kind))
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
