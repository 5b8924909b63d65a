"""Documents whose latest result is `completed`, and where that result sits on the compacted
`<prefix>.results` topic: what lets split answer a new submission of a finished document with
its result, before any page is rendered or recognized (zero model requests)."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict, ValidationError

from streams.runtime.topic_view import TopicView

__all__ = ["FinishedDocuments"]

_log = logging.getLogger(__name__)


class _Outcome(BaseModel):
    """The two fields of a results-topic record this view needs; the rest of the record (the
    whole document's text and pages) is never built, in every split worker, for every result."""

    model_config = ConfigDict(extra="ignore")

    kind: str = ""
    status: str = ""


class FinishedDocuments:
    """doc_id -> (partition, offset) of its latest result, for documents it left `completed`.
    A later result that is not `completed` (a newer submission ended otherwise) removes it."""

    def __init__(self, topic: str, options: dict[str, Any]) -> None:
        self._where: dict[str, tuple[int, int]] = {}
        self._view = TopicView(topic, options, self._apply, followed=False)

    def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        if message.key is None:
            return
        doc_id = message.key.decode(errors="replace")
        outcome = None
        if message.value is not None:
            try:
                outcome = _Outcome.model_validate_json(message.value)
            except (ValidationError, ValueError):
                _log.warning("ignoring an unreadable record on the results topic")
                return
        if outcome and outcome.kind == "document_result" and outcome.status == "completed":
            self._where[doc_id] = (message.partition, message.offset)
        else:
            self._where.pop(doc_id, None)

    def where(self, doc_id: str) -> tuple[int, int] | None:
        return self._where.get(doc_id)

    async def catch_up(self) -> None:
        """Everything on the topic now: a result delivered before a request was read is seen."""
        await self._view.catch_up()

    async def close(self) -> None:
        await self._view.close()
