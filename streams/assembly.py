"""The assembler's state machine: page results in, merge jobs and one document result out.

All state lives in one key-value store (a changelog-backed table, a dict in tests), in small
entries so that no value grows with the page count:

    "<doc_id>"                DocState      counts, token usage
                              (EmittedDoc once its result is out: a few dozen bytes)
    "<doc_id>/p/<page>"       StoredPage    one page result
    "<doc_id>/d/<first>"      StoredDetection  one merge detection (pages first, first + 1)
    "<doc_id>/t/<page>/<i>"   StoredTable   one table-merge outcome

Every change happens while applying one record from the page-results topic, so the table's
changelog is written in the order of that topic's partition. Model calls (merge detection, table
merges) are *jobs* that the agent runs outside the loop; their outcomes come back as records on
the same topic. The first record for a page, pair or table wins and later copies are ignored, so
replays after a crash rebuild exactly the same state and the same result. The result itself is
built by `ocrflux.document.build_result`, the function the direct driver uses.

An outcome costs a look at its own pair or table chain, not at every page: the document's
state counts the detections still to come, and the table-merge chains, fixed once every
detection is in, are kept in memory (`_TablePlan`). The whole document is looked at when a
count runs out, and by the first outcome after a restart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from ocrflux.document import build_result, detection_warning, pairs_to_detect
from ocrflux.merge import (
    Pages,
    TablePair,
    ready_table_merges,
    table_merge_chains,
    table_merges_done,
)
from schemas.records import (
    DocumentCancelled,
    DocumentInfo,
    PageDone,
    PairsDetected,
    ProgressEvent,
    ResultRecord,
    TableMerged,
)
from schemas.results import ErrorInfo, PageResult, TokenUsage

Pair = tuple[int, int]


class DocState(BaseModel):
    kind: Literal["doc_state"] = "doc_state"
    doc_id: str
    info: DocumentInfo
    partition: int = Field(description="page-results partition that owns this document")
    first_seen_at: float
    pages_done: int = 0
    tables_done: int = 0
    #: Merge detections still to come once every page is in (None before, and in states
    #: written by older versions): a detection's outcome then checks this count instead of
    #: every page. Recounted from the pages whenever it reaches 0 or an outcome repeats.
    detections_left: int | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)


class EmittedDoc(BaseModel):
    """What stays of a document once its result is out: enough to ignore late copies, and to
    answer a new submission of the same document with the result already on the results topic
    (where it is, and the last submission answered)."""

    kind: Literal["emitted_doc"] = "emitted_doc"
    status: str
    submission: str | None = None
    result_partition: int | None = None
    result_offset: int | None = None


class StoredPage(BaseModel):
    kind: Literal["stored_page"] = "stored_page"
    result: PageResult
    worker: str = ""
    at: float = 0.0


class StoredDetection(BaseModel):
    kind: Literal["stored_detection"] = "stored_detection"
    pairs: list[Pair]
    error: ErrorInfo | None = None
    at: float = 0.0


class StoredTable(BaseModel):
    kind: Literal["stored_table"] = "stored_table"
    html: str | None
    at: float = 0.0


_STATE = TypeAdapter(
    Annotated[
        DocState | EmittedDoc | StoredPage | StoredDetection | StoredTable,
        Field(discriminator="kind"),
    ]
)


def decode_state(data: bytes) -> DocState | EmittedDoc | StoredPage | StoredDetection | StoredTable:
    """A table value from its changelog JSON."""
    return _STATE.validate_json(data)


def page_key(doc_id: str, page: int) -> str:
    return f"{doc_id}/p/{page}"


def detection_key(doc_id: str, first: int) -> str:
    return f"{doc_id}/d/{first}"


def table_key(doc_id: str, page: int, i: int) -> str:
    return f"{doc_id}/t/{page}/{i}"


@dataclass(frozen=True)
class DetectJob:
    doc_id: str
    first: int
    previous: list[str]
    following: list[str]
    max_attempts: int
    engine: str

    @property
    def key(self) -> tuple[str, ...]:
        return ("detect", self.doc_id, str(self.first))


@dataclass(frozen=True)
class TableJob:
    doc_id: str
    page: int
    i: int
    j: int
    table1: str
    table2: str
    max_attempts: int
    engine: str

    @property
    def key(self) -> tuple[str, ...]:
        return ("table", self.doc_id, str(self.page), str(self.i))


Job = DetectJob | TableJob


def outcome_key(record: PairsDetected | TableMerged) -> tuple[str, ...]:
    """The `key` of the job whose answer `record` is."""
    if isinstance(record, PairsDetected):
        return ("detect", record.doc_id, str(record.first))
    return ("table", record.doc_id, str(record.page), str(record.i))


@dataclass(frozen=True)
class Resend:
    """Send the document's result again, found at `partition`/`offset` of the results topic, as
    the answer to a new submission (its metadata and reply address replace the old ones)."""

    doc_id: str
    partition: int
    offset: int
    info: DocumentInfo


@dataclass
class Step:
    """What applying one record asks the agent to do."""

    jobs: list[Job] = field(default_factory=list)
    result: ResultRecord | None = None
    progress: ProgressEvent | None = None
    finished_keys: list[str] = field(default_factory=list)
    resend: Resend | None = None
    #: A new submission of a document whose result was degraded (partial or failed): it is
    #: recognized and assembled again rather than answered with that result.
    restart: bool = False
    submission: str | None = None  # of the result or resend: the one its marker will name
    info: DocumentInfo | None = None  # of an assembled result (its figures are cropped from it)


class _PagesView(Mapping[int, PageResult]):
    """The stored page results of one document as a read-only mapping by page index."""

    def __init__(self, store: Mapping[str, Any], state: DocState) -> None:
        self._store = store
        self._state = state

    def __getitem__(self, page: int) -> PageResult:
        entry = self._store.get(page_key(self._state.doc_id, page))
        if entry is None:
            raise KeyError(page)
        return entry.result

    def __iter__(self) -> Iterator[int]:
        return (p for p in self._state.info.page_indices() if p in self)

    def __len__(self) -> int:
        return self._state.pages_done

    def __contains__(self, page: object) -> bool:
        return isinstance(page, int) and page_key(self._state.doc_id, page) in self._store


@dataclass
class _TablePlan:
    """A document's table-merge chains and its pages' elements, worked out once every
    detection is in (pages and detections never change after their first record, so neither do
    the chains), and the links still without an outcome. Kept in memory only: after a restart
    the first look at the whole document makes it again."""

    first_seen_at: float
    submission: str | None
    pages: Pages  # the stored element lists themselves, not copies
    chains: list[list[TablePair]]
    chain_of: dict[tuple[int, int], int]  # a link's first element: its chain's index
    open: set[tuple[int, int]]

    def fits(self, state: DocState) -> bool:
        """Whether it was made for this assembly of the document (not one since restarted)."""
        return (self.first_seen_at, self.submission) == (state.first_seen_at, state.info.submission)


class Assembler:
    def __init__(self, store: MutableMapping[str, Any]) -> None:
        self.store = store
        self._plans: dict[str, _TablePlan] = {}

    def apply(
        self,
        record: PageDone | PairsDetected | TableMerged | DocumentCancelled,
        *,
        partition: int,
        at: float,
    ) -> Step:
        """Apply one page-results record; `at` is the record's timestamp (replays repeat it)."""
        state = self.store.get(record.doc_id)
        if isinstance(record, DocumentCancelled):
            return self._cancel(state, record)
        if isinstance(state, EmittedDoc):
            return self._finished_already(state, record)
        if isinstance(record, PageDone):
            if state is None:
                state = DocState(
                    doc_id=record.doc_id, info=record.info, partition=partition, first_seen_at=at
                )
            return self._page(state, record, at)
        if state is None:
            return Step()  # an outcome for an unknown document
        # A repeated outcome changes nothing, but is still a chance to finish: after a crash,
        # replayed records are what re-emits a result that was never delivered.
        if isinstance(record, PairsDetected):
            key = detection_key(record.doc_id, record.first)
            if key in self.store:
                return self._advance(state, at)
            self.store[key] = StoredDetection(pairs=list(record.pairs), error=record.error, at=at)
            if state.detections_left:
                state.detections_left -= 1
        else:
            key = table_key(record.doc_id, record.page, record.i)
            if key in self.store:
                plan = self._plans.get(record.doc_id)
                if plan is not None and plan.fits(state) and plan.open:
                    return Step()  # its chain moved on when the first copy came in
                return self._advance(state, at)
            self.store[key] = StoredTable(html=record.html, at=at)
            state.tables_done += 1
        state.usage.add(record.usage.prompt_tokens, record.usage.completion_tokens)
        self.store[state.doc_id] = state
        if isinstance(record, PairsDetected) and state.detections_left:
            # Others are still to come, each listed when it became ready (the sweep lists
            # lost ones again): not worth a look at every page of the document per outcome.
            return Step()
        if isinstance(record, TableMerged) and (step := self._next_link(state, record)) is not None:
            return step
        return self._advance(state, at)

    def _finished_already(
        self, state: EmittedDoc, record: PageDone | PairsDetected | TableMerged
    ) -> Step:
        """A late copy is ignored; the first page of a new submission asks for the result again,
        or, when that result was degraded (`partial`, `failed`), for the document to be
        assembled again from the new submission's pages: only a `completed` result is final.

        Nothing is written here: the agent handles records one at a time and marks the resend
        once it is delivered (`mark_resent`), so a crash in between resends it again.
        """
        if not isinstance(record, PageDone):
            return Step()
        submission = record.info.submission
        if submission is None or submission == state.submission:
            return Step()
        if state.status != "completed":
            return Step(restart=True, submission=submission)
        if state.result_partition is None or state.result_offset is None:
            return Step()
        resend = Resend(record.doc_id, state.result_partition, state.result_offset, record.info)
        return Step(resend=resend, submission=submission)

    def _cancel(self, state: DocState | EmittedDoc | None, record: DocumentCancelled) -> Step:
        """The `cancelled` result, once per submission. A `completed` result stands (a cancel
        that comes after it changes nothing); a degraded or cancelled one gives way to the
        cancel of a newer submission."""
        if isinstance(state, EmittedDoc) and (
            state.status == "completed" or record.submission in (None, state.submission)
        ):
            return Step()
        if isinstance(state, DocState) and record.submission not in (None, state.info.submission):
            # Another submission's cancel (an older one's, late): the one under way stops only
            # on a cancel of its own, which its own pages bring if the cancel covers it.
            return Step()
        info = state.info if isinstance(state, DocState) else None
        prefix = f"{record.doc_id}/"
        result = ResultRecord(
            doc_id=record.doc_id,
            status="cancelled",
            error=ErrorInfo(code="cancelled", message="cancelled at the caller's request"),
            num_pages=info.num_pages if info else record.num_pages,
            output_format=record.output_format,
            source=record.source,
            engine=info.engine if info else "",
            model=info.model if info else None,
            usage=state.usage if isinstance(state, DocState) else TokenUsage(),
            metadata=record.metadata,
            reply_to=record.reply_to,
        )
        return Step(
            result=result,
            progress=ProgressEvent(
                doc_id=record.doc_id,
                stage="cancelled",
                pages_done=state.pages_done if isinstance(state, DocState) else 0,
                pages_total=info.pages_total if info else record.num_pages,
            ),
            finished_keys=[key for key in list(self.store) if key.startswith(prefix)],
            submission=record.submission,
        )

    def _page(self, state: DocState, record: PageDone, at: float) -> Step:
        page = record.result.index
        key = page_key(state.doc_id, page)
        progress = None
        if key not in self.store:
            self.store[key] = StoredPage(result=record.result, worker=record.worker, at=at)
            if not state.info.engine and record.info.engine:
                state.info = state.info.model_copy(
                    update={"engine": record.info.engine, "model": record.info.model}
                )
            state.pages_done += 1
            self.store[state.doc_id] = state
            progress = ProgressEvent(
                doc_id=state.doc_id,
                stage="recognize",
                pages_done=state.pages_done,
                pages_total=state.info.pages_total,
            )
        if state.pages_done < state.info.pages_total:
            step = Step(jobs=self._detections(state, pages_to_check=(page,)))
        else:
            step = self._advance(state, at)
        step.progress = step.progress or progress
        return step

    def pending_jobs(self, doc_id: str) -> list[Job]:
        """Every job this document needs now (after a restart nothing is in flight)."""
        state = self.store.get(doc_id)
        if not isinstance(state, DocState):
            return []
        if state.pages_done < state.info.pages_total:
            return self._detections(state)
        return self._advance(state, at=None).jobs

    def documents(self) -> Iterator[DocState]:
        for value in list(self.store.values()):
            if isinstance(value, DocState):
                yield value

    def _detections(
        self, state: DocState, pages_to_check: tuple[int, ...] | None = None
    ) -> list[Job]:
        if state.info.options.skip_cross_page_merge:
            return []
        done = _PagesView(self.store, state)
        if pages_to_check is None:
            firsts = {first for page in done for first in pairs_to_detect(done, page)}
        else:
            firsts = {first for page in pages_to_check for first in pairs_to_detect(done, page)}
        return [
            DetectJob(
                state.doc_id,
                first,
                done[first].elements,
                done[first + 1].elements,
                state.info.options.max_page_retries,
                state.info.engine,
            )
            for first in sorted(firsts)
            if detection_key(state.doc_id, first) not in self.store
        ]

    def _stored_detections(self, state: DocState) -> dict[int, StoredDetection]:
        found = {}
        for first in range(state.info.num_pages - 1):
            entry = self.store.get(detection_key(state.doc_id, first))
            if entry is not None:
                found[first] = entry
        return found

    def _advance(self, state: DocState, at: float | None) -> Step:
        """All pages are in: detections, then table merges in chain order, then the result."""
        if state.pages_done < state.info.pages_total:
            return Step()
        detections = self._detections(state)
        if at is not None and state.detections_left != len(detections):
            state.detections_left = len(detections)  # written only while applying a record
            self.store[state.doc_id] = state
        if detections:
            return Step(jobs=detections)
        info = state.info
        done = dict(_PagesView(self.store, state).items())
        detected = self._stored_detections(state)
        pairs = {first: found.pairs for first, found in detected.items() if found.pairs}
        outcomes: dict[tuple[int, int], str | None] = {}
        if not info.options.skip_cross_page_merge:
            pages = [done[p].elements if p in done else None for p in range(info.num_pages)]
            chains = table_merge_chains(pages, pairs)
            outcomes = self._table_outcomes(state.doc_id, chains)
            self._plans[state.doc_id] = _TablePlan(
                first_seen_at=state.first_seen_at,
                submission=info.submission,
                pages=pages,
                chains=chains,
                chain_of={pair.first: n for n, chain in enumerate(chains) for pair in chain},
                open={pair.first for chain in chains for pair in chain} - outcomes.keys(),
            )
            if not table_merges_done(chains, outcomes):
                return Step(jobs=self._table_jobs(state, chains, pages, outcomes))
        if at is None:
            return Step()  # complete: applying the record that completed it emits the result
        return self._emit(state, done, detected, pairs, outcomes, at)

    def _next_link(self, state: DocState, record: TableMerged) -> Step | None:
        """The merge this new outcome makes ready in its own chain, without a look at every
        page (other chains are independent of it); None when the whole document must be looked
        at: no plan for it here, or this was the last outcome to come."""
        plan = self._plans.get(state.doc_id)
        if plan is None or not plan.fits(state):
            return None
        link = (record.page, record.i)
        plan.open.discard(link)
        chain = plan.chain_of.get(link)
        if not plan.open or chain is None:
            return None
        chains = [plan.chains[chain]]
        outcomes = self._table_outcomes(state.doc_id, chains)
        return Step(jobs=self._table_jobs(state, chains, plan.pages, outcomes))

    def _table_jobs(
        self,
        state: DocState,
        chains: list[list[TablePair]],
        pages: Pages,
        outcomes: dict[tuple[int, int], str | None],
    ) -> list[Job]:
        options = state.info.options
        return [
            TableJob(
                state.doc_id,
                pair.page,
                pair.i,
                pair.j,
                table1,
                table2,
                options.max_page_retries,
                state.info.engine,
            )
            for pair, table1, table2 in ready_table_merges(chains, pages, outcomes)
        ]

    def _table_outcomes(
        self, doc_id: str, chains: list[list[TablePair]]
    ) -> dict[tuple[int, int], str | None]:
        outcomes: dict[tuple[int, int], str | None] = {}
        for chain in chains:
            for pair in chain:
                entry = self.store.get(table_key(doc_id, pair.page, pair.i))
                if entry is not None:
                    outcomes[pair.first] = entry.html
        return outcomes

    def _emit(
        self,
        state: DocState,
        done: dict[int, PageResult],
        detected: dict[int, StoredDetection],
        pairs: dict[int, list[Pair]],
        outcomes: dict[tuple[int, int], str | None],
        at: float,
    ) -> Step:
        info = state.info
        # Times come from the stored entries (each the timestamp of its first record), not from
        # the record that happens to complete the document, so a replay repeats them exactly.
        keys = [page_key(state.doc_id, page) for page in done]
        keys += [detection_key(state.doc_id, first) for first in detected]
        keys += [table_key(state.doc_id, page, i) for page, i in outcomes]
        completed_at = max(self.store[key].at for key in keys)
        timings = {"assemble_s": round(completed_at - state.first_seen_at, 3)}
        if info.submitted_at is not None:
            timings["total_s"] = round(completed_at - info.submitted_at, 3)
        merged = {key: html for key, html in outcomes.items() if html}
        result = build_result(
            done=done,
            num_pages=info.num_pages,
            pairs=pairs,
            merged_tables=merged,
            options=info.options,
            usage=state.usage,
            doc_id=state.doc_id,
            source=info.source,
            engine=info.engine,
            model=info.model,
            timings=timings,
            warnings=[
                *info.warnings,
                *(
                    detection_warning(first, found.error)
                    for first, found in sorted(detected.items())
                    if found.error is not None
                ),
            ],
        )
        # The result's own field values, not a dump of them: a deep copy of a 1,000-page result
        # was about 5 MB more at the assembler's memory peak.
        record = ResultRecord(**dict(result), metadata=info.metadata, reply_to=info.reply_to)
        progress = ProgressEvent(
            doc_id=state.doc_id,
            stage=record.status,
            pages_done=state.pages_done,
            pages_total=info.pages_total,
        )
        return Step(
            result=record,
            progress=progress,
            finished_keys=keys,
            submission=info.submission,
            info=info,
        )

    def mark_emitted(self, step: Step, position: tuple[int, int] | None = None) -> None:
        """Record that `step.result` is durably on the results topic, and drop the entries.

        Call it only once the result's delivery is acknowledged: a crash before that replays
        into the same, unmarked state and emits an identical result again. The flag is written
        before the entries go, so a replay that finds them gone also finds the flag (one table,
        one changelog partition, in order). `position` is the result's (partition, offset) on
        the results topic, kept to answer later submissions.
        """
        assert step.result is not None
        self._plans.pop(step.result.doc_id, None)
        partition, offset = position if position is not None else (None, None)
        self.store[step.result.doc_id] = EmittedDoc(
            status=step.result.status,
            submission=step.submission,
            result_partition=partition,
            result_offset=offset,
        )
        for key in step.finished_keys:
            del self.store[key]

    def fail(self, doc_id: str, error: ErrorInfo) -> Step:
        """The `failed` result of a document whose records cannot be applied (a bug): it ends
        the document like any other result, so later copies are ignored and a new submission
        starts over."""
        state = self.store.get(doc_id)
        if isinstance(state, EmittedDoc):
            return Step()
        info = state.info if isinstance(state, DocState) else None
        prefix = f"{doc_id}/"
        record = ResultRecord(
            doc_id=doc_id,
            status="failed",
            error=error,
            num_pages=info.num_pages if info else 0,
            output_format=info.options.output_format if info else "markdown",
            source=info.source if info else None,
            engine=info.engine if info else "",
            model=info.model if info else None,
            metadata=info.metadata if info else {},
            reply_to=info.reply_to if info else None,
        )
        return Step(
            result=record,
            progress=ProgressEvent(doc_id=doc_id, stage="failed"),
            finished_keys=[key for key in list(self.store) if key.startswith(prefix)],
            submission=info.submission if info else None,
        )

    def keep_plans(self, doc_ids: set[str]) -> None:
        """Drop the table plans of documents other than `doc_ids` (those this worker holds)."""
        for doc_id in self._plans.keys() - doc_ids:
            del self._plans[doc_id]

    def forget(self, doc_id: str) -> None:
        """Drop a finished document's marker: its next page starts a new assembly."""
        del self.store[doc_id]
        self._plans.pop(doc_id, None)

    def mark_resent(self, step: Step, position: tuple[int, int]) -> None:
        """Record that `step.resend` answered its submission, now from `position`."""
        assert step.resend is not None
        state = self.store[step.resend.doc_id]
        self.store[step.resend.doc_id] = state.model_copy(
            update={
                "submission": step.submission,
                "result_partition": position[0],
                "result_offset": position[1],
            }
        )
