"""File names made printable and serializable, whatever bytes they hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ocrflux.filenames import display_name, text_name
from schemas.records import DocumentRequest, encode


def test_undecodable_bytes_become_escapes_that_json_accepts() -> None:
    name = os.fsdecode(b"caf\xe9.pdf")  # how Python hands such a name over (surrogateescape)
    assert text_name(name) == text_name(b"caf\xe9.pdf") == text_name(Path(name)) == "caf\\xe9.pdf"
    request = DocumentRequest(content=b"x", filename=text_name(name))
    assert json.loads(encode(request))["filename"] == "caf\\xe9.pdf"


def test_valid_names_are_kept_and_stray_surrogates_escaped() -> None:
    assert text_name("résumé 2024.pdf") == "résumé 2024.pdf"
    assert text_name("x\ud800.pdf") == "x\\xed\\xa0\\x80.pdf"  # not from any file system


def test_display_name_escapes_control_characters() -> None:
    assert display_name("a\nb\x1b[31m\x7f.pdf") == "a\\x0ab\\x1b[31m\\x7f.pdf"
    assert text_name("a\tb.pdf") == "a\tb.pdf"  # valid text: records keep it as it is
