"""Fault injection for the OCRFlux-3B test double: which request fails, and how.

A `FaultRule` selects requests (a seeded rate, the next N, a task, specific pages) and names a
kind. Rules are checked in the order they were added; the first that fires decides. Everything is
deterministic for a given order of requests.

Kinds and what a client sees:

    http_429             an immediate 429 error body with `Retry-After` (the rule's
                         `retry_after`, default 1 s): a server or gateway shedding load
    http_500, http_503   an immediate vLLM-style error body with that status (no GPU slot);
                         http_503 sends `Retry-After` only when the rule sets `retry_after`
    drop                 the connection is closed without any response (no GPU slot)
    drop_mid_body        the true answer is generated (GPU slot held), then its headers and
                         about half of its JSON body are sent and the connection is closed
    stall                holds a GPU slot for `stall_seconds` (default an hour: past any
                         client's timeout; a looping generation), ends early when the client
                         goes away or the server stops; if it runs out, the answer is truncated
                         with finish_reason "length"
    invalid_json         page task: "Here is the page: " + half of the true JSON
    wrong_keys           page task: the true JSON without "is_diagram"
    non_page_json        page task: valid JSON that is not a page object (the true page object
                         inside a list)
    huge_answer          any task: about 5 MB of content with finish_reason "stop", whatever
                         `max_tokens` says; for a page, valid page JSON whose natural_text is
                         the true text followed by paragraphs of filler up to 5 MB
    length               any task: half of the true content, finish_reason "length"
    bad_pairs            detect task: "[(0, 0), (99, 7)]" (indices out of range)
    garbage_pairs        detect task: a sentence, not a list
    bad_table            table_merge task: an answer that does not start with "<table>"

`retry_after` (http_429 and http_503 only) is a number of seconds or a raw header value such as
an HTTP date; "" sends no header. A whole model outage is a health mode, not a fault
(control_api.py).

On the double's command line a rule is `--fault KIND[:FIELD=VALUE,...]`, for example
`--fault http_429:count=3,retry_after=2` (`FaultRule.from_spec`; pages joined with "+").
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.truth import TASKS, Task

FAULT_KINDS = (
    "http_429",
    "http_500",
    "http_503",
    "drop",
    "drop_mid_body",
    "stall",
    "invalid_json",
    "wrong_keys",
    "non_page_json",
    "huge_answer",
    "length",
    "bad_pairs",
    "garbage_pairs",
    "bad_table",
)
# Kinds that leave the content alone (the answer never arrives whole, or at all).
TRANSPORT_KINDS = frozenset({"http_429", "http_500", "http_503", "drop", "drop_mid_body"})
RETRY_AFTER_KINDS = frozenset({"http_429", "http_503"})
DEFAULT_RETRY_AFTER_S = 1.0
HUGE_ANSWER_CHARS = 5 * 1024 * 1024
# Kinds that only make sense for one task never fire on another (a page rule with rate 1.0 must
# not turn detection answers into page garbage).
KIND_TASKS: dict[str, frozenset[str]] = {
    "invalid_json": frozenset({"page"}),
    "wrong_keys": frozenset({"page"}),
    "non_page_json": frozenset({"page"}),
    "bad_pairs": frozenset({"detect"}),
    "garbage_pairs": frozenset({"detect"}),
    "bad_table": frozenset({"table_merge"}),
}
BAD_PAIRS = "[(0, 0), (99, 7)]"
GARBAGE_PAIRS = "The third paragraph of the first page continues on the second page."
FILLER_PARAGRAPH = (
    "This paragraph repeats to make the answer huge; a real page never holds this much text. "
) * 8
RULE_FIELDS = ("kind", "rate", "count", "task", "pages", "seed", "retry_after")


@dataclass(slots=True)
class FaultRule:
    """Select requests and name a fault. No `rate` and no `count` means every matching request."""

    kind: str
    rate: float | None = None
    count: int | None = None
    task: Task | None = None
    pages: frozenset[str] = frozenset()
    seed: int = 0
    retry_after: float | str | None = None
    id: int = 0
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be >= 0")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}")
        if self.pages and self.task not in (None, "page"):
            raise ValueError("a rule restricted to pages applies to the page task only")
        if self.retry_after is not None:
            if self.kind not in RETRY_AFTER_KINDS:
                raise ValueError(
                    f"retry_after applies to {' and '.join(sorted(RETRY_AFTER_KINDS))}"
                )
            if isinstance(self.retry_after, bool) or not isinstance(
                self.retry_after, int | float | str
            ):
                raise ValueError("retry_after must be seconds or a header value")
            if not isinstance(self.retry_after, str) and not self.retry_after >= 0:
                raise ValueError("retry_after must not be negative")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        unknown = set(data) - set(RULE_FIELDS)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        if "kind" not in data:
            raise ValueError("a fault needs a kind")
        return cls(
            kind=data["kind"],
            rate=data.get("rate"),
            count=data.get("count"),
            task=data.get("task"),
            pages=frozenset(data.get("pages") or ()),
            seed=int(data.get("seed", 0)),
            retry_after=data.get("retry_after"),
        )

    @classmethod
    def from_spec(cls, spec: str) -> FaultRule:
        """A rule from the command line's `KIND[:FIELD=VALUE,...]` (values read as JSON when
        they parse, else as text; pages joined with "+")."""
        kind, _, fields = spec.partition(":")
        data: dict[str, Any] = {"kind": kind.strip()}
        for item in filter(None, (part.strip() for part in fields.split(","))):
            name, equals, value = item.partition("=")
            if not equals:
                raise ValueError(f"expected FIELD=VALUE in fault {spec!r}, got {item!r}")
            name = name.strip()
            if name == "pages":
                data[name] = [page for page in value.split("+") if page]
                continue
            try:
                data[name] = json.loads(value)
            except json.JSONDecodeError:
                data[name] = value
        return cls.from_json(data)

    def retry_after_header(self) -> str | None:
        """The `Retry-After` value this rule's answer carries, if any."""
        value = self.retry_after
        if value is None:
            value = DEFAULT_RETRY_AFTER_S if self.kind == "http_429" else None
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return value
        return str(int(value)) if float(value).is_integer() else str(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "rate": self.rate,
            "count": self.count,
            "task": self.task,
            "pages": sorted(self.pages),
            "seed": self.seed,
            "retry_after": self.retry_after,
            "fired": self.fired,
        }

    def _applies(self, task: Task, page_key: str | None) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        if self.task is not None and self.task != task:
            return False
        if self.kind in KIND_TASKS and task not in KIND_TASKS[self.kind]:
            return False
        return not self.pages or (task == "page" and page_key in self.pages)

    def fires(self, task: Task, page_key: str | None) -> bool:
        if not self._applies(task, page_key):
            return False
        if self.rate is not None and self._rng.random() >= self.rate:
            return False
        self.fired += 1
        return True


class FaultPlan:
    """The active rules, in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, rule: FaultRule) -> int:
        rule.id = self._next_id
        self._next_id += 1
        self._rules.append(rule)
        return rule.id

    def remove(self, rule_id: int) -> bool:
        before = len(self._rules)
        self._rules = [rule for rule in self._rules if rule.id != rule_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self._rules]

    def pick(self, task: Task, page_key: str | None) -> FaultRule | None:
        """The rule whose fault this request gets, if any (the first rule that fires)."""
        for rule in self._rules:
            if rule.fires(task, page_key):
                return rule
        return None


def corrupt(kind: str, content: str, task: Task) -> tuple[str, str]:
    """The (content, finish_reason) a content fault turns a true answer into."""
    half = content[: max(1, len(content) // 2)]
    if kind == "invalid_json":
        return "Here is the page: " + half, "stop"
    if kind == "wrong_keys":
        return _without_key(content, "is_diagram"), "stop"
    if kind == "non_page_json":
        return "[" + content + "]", "stop"
    if kind == "huge_answer":
        return _huge(content, task), "stop"
    if kind in ("length", "stall"):
        return half, "length"
    if kind == "bad_pairs":
        return BAD_PAIRS, "stop"
    if kind == "garbage_pairs":
        return GARBAGE_PAIRS, "stop"
    if kind == "bad_table":
        return "The merged table is:\n" + content, "stop"
    raise ValueError(f"{kind!r} is not a content fault")


def _huge(content: str, task: Task) -> str:
    """`content` grown to `HUGE_ANSWER_CHARS`; for a page, as valid page JSON."""
    if task == "page":
        try:
            page = json.loads(content)
        except json.JSONDecodeError:
            page = None
        if isinstance(page, dict):
            text = page.get("natural_text") or ""
            repeats = HUGE_ANSWER_CHARS // (len(FILLER_PARAGRAPH) + 2) + 1
            page["natural_text"] = "\n\n".join([text] * bool(text) + [FILLER_PARAGRAPH] * repeats)
            return json.dumps(page, ensure_ascii=False)
    filler = "\n" + FILLER_PARAGRAPH
    return content + filler * (HUGE_ANSWER_CHARS // len(filler) + 1)


def _without_key(content: str, key: str) -> str:
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return json.dumps({"natural_text": content})
    data.pop(key, None)
    return json.dumps(data, ensure_ascii=False)
