"""Which objects the source submits (no servers)."""

from __future__ import annotations

import pytest

from connectors.s3.filters import ObjectFilter, addressable
from connectors.s3.objects import ObjectInfo, normalize_etag


def _obj(key: str, size: int = 100) -> ObjectInfo:
    return ObjectInfo("bucket", key, "e", size)


@pytest.mark.parametrize(
    ("key", "size", "reason"),
    [
        ("in/a.pdf", 100, None),
        ("in/A.PDF", 100, None),
        ("other/a.pdf", 100, "prefix"),
        ("in/folder/", 0, "folder"),
        ("in/a.md", 100, "suffix"),
        ("in/empty.pdf", 0, "size"),
        ("in/huge.pdf", 10_001, "size"),
        ("in/a#b.pdf", 100, "key"),
        ("in/what?.pdf", 100, "key"),
    ],
)
def test_rules(key: str, size: int, reason: str | None) -> None:
    rules = ObjectFilter(prefix="in/", suffixes=(".pdf",), min_size=1, max_size=10_000)
    assert rules.reason(_obj(key, size)) == reason


def test_no_suffix_rule_takes_everything() -> None:
    assert ObjectFilter().reason(_obj("notes.txt")) is None


def test_content_types() -> None:
    rules = ObjectFilter(content_types=("application/pdf",))
    assert rules.checks_type
    assert rules.accepts_type("application/pdf")
    assert rules.accepts_type("Application/PDF; charset=binary")
    assert not rules.accepts_type("text/plain")
    assert not rules.accepts_type(None)
    assert ObjectFilter().accepts_type(None)


def test_keys_that_survive_as_urls() -> None:
    assert addressable("b", "dir/with space/+plus%20.pdf")
    assert not addressable("b", "a#fragment.pdf")


def test_etags_lose_their_quotes() -> None:
    assert normalize_etag('"abc"') == normalize_etag("abc") == normalize_etag('W/"abc"') == "abc"
    assert normalize_etag(None) == ""
