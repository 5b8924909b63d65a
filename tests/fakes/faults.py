"""Fault injection for the OCRFlux-3B test double: which request fails, and how.

A `FaultRule` selects requests (a seeded rate, the next N, a task, specific pages) and names a
kind. Rules are checked in the order they were added; the first that fires decides. Everything is
deterministic for a given order of requests.

Kinds and what a client sees:

    http_500, http_503   an immediate vLLM-style error body with that status (no GPU slot)
    drop                 the connection is closed without any response (no GPU slot)
    stall                holds a GPU slot for `stall_seconds` (a looping generation), ends
                         early when the client goes away or the server stops; if it runs out,
                         the answer is truncated with finish_reason "length"
    invalid_json         page task: "Here is the page: " + half of the true JSON
    wrong_keys           page task: the true JSON without "is_diagram"
    length               any task: half of the true content, finish_reason "length"
    bad_pairs            detect task: "[(0, 0), (99, 7)]" (indices out of range)
    garbage_pairs        detect task: a sentence, not a list
    bad_table            table_merge task: an answer that does not start with "<table>"
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.truth import TASKS, Task

FAULT_KINDS = (
    "http_500",
    "http_503",
    "drop",
    "stall",
    "invalid_json",
    "wrong_keys",
    "length",
    "bad_pairs",
    "garbage_pairs",
    "bad_table",
)
TRANSPORT_KINDS = frozenset({"http_500", "http_503", "drop"})
# Kinds that only make sense for one task never fire on another (a page rule with rate 1.0 must
# not turn detection answers into page garbage).
KIND_TASKS: dict[str, frozenset[str]] = {
    "invalid_json": frozenset({"page"}),
    "wrong_keys": frozenset({"page"}),
    "bad_pairs": frozenset({"detect"}),
    "garbage_pairs": frozenset({"detect"}),
    "bad_table": frozenset({"table_merge"}),
}
BAD_PAIRS = "[(0, 0), (99, 7)]"
GARBAGE_PAIRS = "The third paragraph of the first page continues on the second page."


@dataclass(slots=True)
class FaultRule:
    """Select requests and name a fault. No `rate` and no `count` means every matching request."""

    kind: str
    rate: float | None = None
    count: int | None = None
    task: Task | None = None
    pages: frozenset[str] = frozenset()
    seed: int = 0
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
        self._rng = random.Random(self.seed)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        unknown = set(data) - {"kind", "rate", "count", "task", "pages", "seed"}
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
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "rate": self.rate,
            "count": self.count,
            "task": self.task,
            "pages": sorted(self.pages),
            "seed": self.seed,
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

    def pick(self, task: Task, page_key: str | None) -> str | None:
        """The fault for this request, if any (the first rule that fires)."""
        for rule in self._rules:
            if rule.fires(task, page_key):
                return rule.kind
        return None


def corrupt(kind: str, content: str) -> tuple[str, str]:
    """The (content, finish_reason) a content fault turns a true answer into."""
    half = content[: max(1, len(content) // 2)]
    if kind == "invalid_json":
        return "Here is the page: " + half, "stop"
    if kind == "wrong_keys":
        return _without_key(content, "is_diagram"), "stop"
    if kind in ("length", "stall"):
        return half, "length"
    if kind == "bad_pairs":
        return BAD_PAIRS, "stop"
    if kind == "garbage_pairs":
        return GARBAGE_PAIRS, "stop"
    if kind == "bad_table":
        return "The merged table is:\n" + content, "stop"
    raise ValueError(f"{kind!r} is not a content fault")


def _without_key(content: str, key: str) -> str:
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return json.dumps({"natural_text": content})
    data.pop(key, None)
    return json.dumps(data, ensure_ascii=False)
