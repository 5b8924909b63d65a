"""The assembler's state machine on a plain dict store: order, duplicates, replays."""

from __future__ import annotations

import copy
import random
import tracemalloc
from collections.abc import Callable

from ocrflux.document import build_result
from schemas.options import ConversionOptions
from schemas.records import DocumentInfo, PageDone, PairsDetected, ResultRecord, TableMerged, encode
from schemas.results import ErrorInfo, PageResult, TokenUsage
from streams.assembly import Assembler, DetectJob, EmittedDoc, Step, TableJob, outcome_key
from tests.scenarios import REPORT_PAGE_TEXTS, REPORT_TEXT, twelve_page_report

CASE = twelve_page_report()
INFO = DocumentInfo(
    first_page=0,
    stop_page=12,
    num_pages=12,
    options=ConversionOptions(),
    source="report.pdf",
    engine="vllm",
    submitted_at=100.0,
)


def page_records(doc_id: str = "doc") -> list[PageDone]:
    return [
        PageDone(doc_id=doc_id, info=INFO, result=PageResult(index=p, elements=CASE.elements(p)))
        for p in range(12)
    ]


def answer(job: DetectJob | TableJob) -> PairsDetected | TableMerged:
    """What the model answers for the case (the test double's truth, in-process)."""
    if isinstance(job, DetectJob):
        return PairsDetected(
            doc_id=job.doc_id, first=job.first, pairs=list(CASE.merges.get(job.first, []))
        )
    merged = {(t1, t2): m for t1, t2, m in CASE.table_merges}[(job.table1, job.table2)]
    return TableMerged(doc_id=job.doc_id, page=job.page, i=job.i, j=job.j, html=merged)


def run(
    assembler: Assembler,
    records: list,
    seed: int = 0,
    position: tuple[int, int] | None = None,
) -> tuple[list[Step], list]:
    """Apply records; answer jobs in a shuffled order, as concurrent workers would. A result is
    marked emitted as if delivered at `position` of the results topic."""
    rng = random.Random(seed)
    queue = list(records)
    steps, log, launched = [], [], set()
    at = 1000.0
    while queue:
        record = queue.pop(0)
        log.append(record)
        at += 1
        step = assembler.apply(record, partition=0, at=at)
        if step.result is not None:
            assembler.mark_emitted(step, position)  # as the agent does once it is delivered
        steps.append(step)
        fresh = [job for job in step.jobs if job.key not in launched]  # the agent's in-flight set
        launched.update(job.key for job in fresh)
        answers = [answer(job) for job in fresh]
        rng.shuffle(answers)
        queue.extend(answers)
    return steps, log


def results(steps: list[Step]) -> list:
    return [s.result for s in steps if s.result is not None]


def test_pages_in_any_order_give_the_direct_drivers_text() -> None:
    for seed in range(5):
        records = page_records()
        random.Random(seed).shuffle(records)
        store: dict = {}
        steps, _ = run(Assembler(store), records, seed)
        (result,) = results(steps)
        assert result.document_text == REPORT_TEXT
        assert result.page_texts == REPORT_PAGE_TEXTS
        assert result.status == "completed"
        assert result.timings["total_s"] > 0
        # Only the small emitted marker is left behind.
        assert list(store) == ["doc"] and store["doc"] == EmittedDoc(status="completed")


def test_detection_starts_as_soon_as_both_pages_of_a_pair_are_in() -> None:
    assembler = Assembler({})
    records = page_records()
    assert assembler.apply(records[0], partition=0, at=1).jobs == []
    step = assembler.apply(records[1], partition=0, at=2)
    assert [(j.first, type(j).__name__) for j in step.jobs] == [(0, "DetectJob")]
    assert assembler.apply(records[5], partition=0, at=3).jobs == []
    step = assembler.apply(records[4], partition=0, at=4)
    assert sorted(j.first for j in step.jobs) == [4]


def test_duplicates_and_outcomes_after_emission_change_nothing() -> None:
    store: dict = {}
    assembler = Assembler(store)
    steps, log = run(assembler, page_records())
    (first,) = results(steps)
    again = [assembler.apply(record, partition=0, at=5000.0) for record in log]
    assert results(again) == [] and all(s.jobs == [] for s in again)
    assert first.document_text == REPORT_TEXT


def test_first_page_result_wins_over_a_redelivered_one() -> None:
    assembler = Assembler({})
    records = page_records()
    changed = PageDone(
        doc_id="doc", info=INFO, result=PageResult(index=9, elements=["Something else entirely."])
    )
    steps, _ = run(assembler, [*records[:10], changed, *records[10:]])
    (result,) = results(steps)
    assert result.document_text == REPORT_TEXT


def test_replay_after_a_crash_emits_a_byte_identical_result() -> None:
    store: dict = {}
    steps, log = run(Assembler(store), page_records(), seed=3)
    (original,) = results(steps)
    for cut in range(1, len(log)):
        # State as of record `cut`, then the whole topic again from an earlier committed point.
        recovered: dict = {}
        run_prefix = Assembler(recovered)
        for n, record in enumerate(log[:cut]):
            run_prefix.apply(record, partition=0, at=1001.0 + n)
        snapshot = copy.deepcopy(recovered)
        replay = Assembler(snapshot)
        replayed = []
        for n, record in enumerate(log):
            replayed.append(step := replay.apply(record, partition=0, at=1001.0 + n))
            if step.result is not None:
                replay.mark_emitted(step)
        emitted = results(replayed)
        assert len(emitted) <= 1
        if emitted:
            assert emitted[0].model_dump_json() == original.model_dump_json()
        else:
            assert isinstance(snapshot["doc"], EmittedDoc)  # it was emitted before the crash


def test_pending_jobs_after_restart_relaunch_unfinished_work() -> None:
    store: dict = {}
    assembler = Assembler(store)
    for record in page_records():
        assembler.apply(record, partition=0, at=1.0)  # jobs "lost" in the crash
    fresh = Assembler(copy.deepcopy(store))
    pending = fresh.pending_jobs("doc")
    assert sorted(j.first for j in pending if isinstance(j, DetectJob)) == [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        9,
        10,
    ]
    steps, _ = run(fresh, [answer(job) for job in pending])
    (result,) = results(steps)
    assert result.document_text == REPORT_TEXT


def test_skip_cross_page_merge_emits_on_the_last_page_without_jobs() -> None:
    info = INFO.model_copy(update={"options": ConversionOptions(skip_cross_page_merge=True)})
    assembler = Assembler({})
    steps = [
        assembler.apply(
            PageDone(doc_id="d", info=info, result=PageResult(index=p, elements=CASE.elements(p))),
            partition=0,
            at=float(p),
        )
        for p in range(12)
    ]
    assembler.mark_emitted(steps[-1])
    assert all(s.jobs == [] for s in steps)
    assert steps[-1].result is not None and all(s.result is None for s in steps[:-1])
    assert steps[-1].progress is not None and steps[-1].progress.stage == "completed"


def test_progress_counts_each_page_once() -> None:
    assembler = Assembler({})
    records = page_records()
    first = assembler.apply(records[0], partition=0, at=1)
    dup = assembler.apply(records[0], partition=0, at=2)
    assert first.progress is not None and first.progress.pages_done == 1
    assert first.progress.pages_total == 12
    assert dup.progress is None


def test_a_result_lost_before_delivery_is_emitted_again_identically() -> None:
    store: dict = {}
    assembler = Assembler(store)
    records = page_records()
    steps, log, launched = [], [], set()
    queue = list(records)
    while queue:
        record = queue.pop(0)
        log.append(record)
        step = assembler.apply(record, partition=0, at=float(len(log)))
        steps.append(step)
        queue.extend(answer(job) for job in step.jobs if job.key not in launched)
        launched.update(job.key for job in step.jobs)
    (lost,) = results(steps)  # never marked emitted: the worker died before delivery
    again = Assembler(store).apply(log[-1], partition=0, at=float(len(log)))
    assert again.result is not None
    assert again.result.model_dump_json() == lost.model_dump_json()


def submitted(records: list[PageDone], submission: str, **metadata: str) -> list[PageDone]:
    """The same pages as split from the request read at `submission`."""
    info = INFO.model_copy(update={"submission": submission, "metadata": metadata})
    return [r.model_copy(update={"info": info}) for r in records]


def test_a_new_submission_of_a_finished_document_asks_once_for_its_result() -> None:
    store: dict = {}
    assembler = Assembler(store)
    first = submitted(page_records(), "0@7")
    run(assembler, first, position=(2, 40))  # delivered at results[2]@40
    assert store["doc"].submission == "0@7" and store["doc"].result_offset == 40

    # Late copies of the first submission's pages: nothing to do.
    assert assembler.apply(first[3], partition=0, at=2000) == Step()
    again = submitted(page_records(), "1@9", team="ops")
    step = assembler.apply(again[0], partition=0, at=2001)
    assert step.resend is not None
    assert (step.resend.partition, step.resend.offset) == (2, 40)
    assert step.resend.info.metadata == {"team": "ops"} and step.submission == "1@9"
    assembler.mark_resent(step, (2, 55))
    # The rest of that submission is already answered; its new position is kept.
    assert all(assembler.apply(r, partition=0, at=2002) == Step() for r in again[1:])
    assert store["doc"] == EmittedDoc(
        status="completed", submission="1@9", result_partition=2, result_offset=55
    )


def test_a_forgotten_result_is_assembled_again_from_the_new_submission() -> None:
    store: dict = {}
    assembler = Assembler(store)
    run(assembler, submitted(page_records(), "0@7"), position=(0, 3))
    again = submitted(page_records(), "0@8")
    assert assembler.apply(again[0], partition=0, at=3000).resend is not None
    assembler.forget("doc")  # the agent found no result at results[0]@3
    steps, _ = run(assembler, again)
    (result,) = results(steps)
    assert result.document_text == REPORT_TEXT


def test_a_marker_without_a_position_ignores_every_record() -> None:
    store: dict = {"doc": EmittedDoc(status="completed")}  # written before positions were kept
    assembler = Assembler(store)
    for record in submitted(page_records(), "4@1"):
        assert assembler.apply(record, partition=0, at=1) == Step()


def test_a_degraded_result_is_not_final_a_new_submission_restarts_the_document() -> None:
    store: dict = {}
    assembler = Assembler(store)
    failing = page_records()
    failing[4] = PageDone(
        doc_id="doc",
        info=INFO,
        result=PageResult(index=4, fallback=True, source="none"),
    )
    steps, _ = run(assembler, submitted(failing, "0@7"), position=(0, 3))
    (first,) = results(steps)
    assert first.status == "partial" and store["doc"].status == "partial"
    assert assembler.apply(submitted(page_records(), "0@7")[0], partition=0, at=1) == Step()

    again = submitted(page_records(), "0@8")
    step = assembler.apply(again[0], partition=0, at=3000)
    assert step.restart and step.resend is None  # recognized again, not answered from the topic
    assembler.forget("doc")
    steps, _ = run(assembler, again)
    (result,) = results(steps)
    assert result.status == "completed" and result.document_text == REPORT_TEXT


def test_a_failed_document_ends_with_one_failed_result_and_no_leftovers() -> None:
    store: dict = {}
    assembler = Assembler(store)
    for record in page_records()[:5]:
        assembler.apply(record, partition=0, at=1)
    step = assembler.fail("doc", ErrorInfo(code="internal", message="a bug"))
    assert step.result is not None and step.result.status == "failed"
    assert step.result.source == "report.pdf" and step.result.num_pages == 12
    assembler.mark_emitted(step, (0, 9))
    assert list(store) == ["doc"] and store["doc"].status == "failed"
    assert assembler.fail("doc", ErrorInfo(code="internal", message="again")) == Step()


def test_every_job_is_recognised_by_the_record_that_answers_it() -> None:
    jobs: list[DetectJob | TableJob] = []
    steps, _ = run(Assembler({}), page_records())
    for step in steps:
        jobs.extend(step.jobs)
    assert any(isinstance(job, TableJob) for job in jobs)
    assert all(outcome_key(answer(job)) == job.key for job in jobs)


def _traced_peak(action: Callable[[], object]) -> int:
    """Bytes allocated at the height of `action`, above what was allocated before it."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def test_emitting_a_result_costs_no_more_memory_than_building_it() -> None:
    """The result record is made from the built result's own values: a deep copy of a large
    document's result raised the assembler's memory peak by half as much again."""
    pages = 300
    info = DocumentInfo(
        first_page=0,
        stop_page=pages,
        num_pages=pages,
        options=ConversionOptions(skip_cross_page_merge=True),
        engine="vllm",
    )
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]
    records = [
        PageDone(
            doc_id="big",
            info=info,
            result=PageResult(
                index=p,
                elements=[" ".join(rng.choice(words) for _ in range(40)) for _ in range(6)],
            ),
        )
        for p in range(pages)
    ]
    assembler = Assembler({})
    for at, record in enumerate(records[:-1]):
        assert assembler.apply(record, partition=0, at=at).result is None
    done = {r.result.index: r.result for r in records}
    steps: list[Step] = []
    emitting = _traced_peak(lambda: steps.append(assembler.apply(records[-1], partition=0, at=1)))
    building = _traced_peak(
        lambda: build_result(
            done=done,
            num_pages=pages,
            pairs={},
            merged_tables={},
            options=info.options,
            usage=TokenUsage(),
        )
    )
    result = steps[0].result
    assert result is not None and result.status == "completed" and len(result.blocks) == 6 * pages
    assert emitting < 1.25 * building, (emitting, building)


def test_a_result_is_encoded_without_copies_of_its_json() -> None:
    """Records are encoded straight to bytes: going through a str cost a large result two more
    copies of its JSON, twice the size when a character is outside Latin-1 (here the dash)."""
    pages = [
        PageResult(index=p, elements=[f"Page {p} \N{EM DASH} " + "lorem ipsum " * 100])
        for p in range(200)
    ]
    done = {page.index: page for page in pages}
    built = build_result(
        done=done,
        num_pages=len(pages),
        pairs={},
        merged_tables={},
        options=ConversionOptions(skip_cross_page_merge=True),
        usage=TokenUsage(),
    )
    record = ResultRecord(**dict(built))
    encoded = encode(record)  # the first call also sets the serializer up
    assert encoded == record.model_dump_json().encode()
    assert len(encoded) > 500_000
    assert _traced_peak(lambda: encode(record)) < 1.2 * len(encoded)


class _CountingStore(dict[str, object]):
    """A dict store that counts the assembler's reads."""

    reads = 0

    def get(self, key: str, default: object = None) -> object:
        self.reads += 1
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.reads += 1
        return super().__contains__(key)

    def __getitem__(self, key: str) -> object:
        self.reads += 1
        return super().__getitem__(key)


def test_a_detection_outcome_does_not_look_at_every_page() -> None:
    pages = 400
    info = INFO.model_copy(update={"stop_page": pages, "num_pages": pages})
    store = _CountingStore()
    assembler = Assembler(store)
    firsts: set[int] = set()
    for page in range(pages):
        result = PageResult(index=page, elements=[f"Page {page} stands alone."])
        step = assembler.apply(PageDone(doc_id="big", info=info, result=result), partition=0, at=1)
        firsts.update(job.first for job in step.jobs if isinstance(job, DetectJob))
    assert firsts == set(range(pages - 1))
    store.reads = 0
    steps = [
        assembler.apply(PairsDetected(doc_id="big", first=first, pairs=[]), partition=0, at=2)
        for first in range(pages - 1)
    ]
    # Looking at every page on each outcome would be about 2,000 reads each, 800,000 in all.
    assert store.reads < 20 * pages
    assert [s.result is not None for s in steps] == [False] * (pages - 2) + [True]
    last = steps[-1].result
    assert last is not None and last.status == "completed"
    assert last.document_text.split("\n\n")[-1] == f"Page {pages - 1} stands alone."


def test_a_detection_stored_without_its_count_is_recounted_when_replayed() -> None:
    # A crash after the changelog kept a detection but not the document's state that counted
    # it: the record is replayed (its offset was not committed), and the document must still
    # finish when the last detection comes in.
    store: dict = {}
    assembler = Assembler(store)
    detections: dict[int, DetectJob] = {}
    for record in page_records():
        step = assembler.apply(record, partition=0, at=1.0)
        detections.update((j.first, j) for j in step.jobs if isinstance(j, DetectJob))
    *answered, lost, last = [answer(detections[first]) for first in sorted(detections)]
    for outcome in answered:
        assert assembler.apply(outcome, partition=0, at=2.0).result is None
    counted = copy.deepcopy(store["doc"])
    assert counted.detections_left == 2
    assembler.apply(lost, partition=0, at=3.0)
    store["doc"] = counted  # the state as it was before `lost`, its detection kept
    assert assembler.apply(lost, partition=0, at=3.0).result is None  # the replay
    steps, _ = run(assembler, [last])
    (result,) = results(steps)
    assert result.document_text == REPORT_TEXT


def _table(page: int) -> str:
    return f"<table><tr><td>p{page}</td></tr></table>"


def _merged(job: TableJob) -> TableMerged:
    """A merged table's answer: the rows of both tables in one."""
    html = job.table1.removesuffix("</table>") + job.table2.removeprefix("<table>")
    return TableMerged(doc_id=job.doc_id, page=job.page, i=job.i, j=job.j, html=html)


def _tables_document(assembler: Assembler, pages: int) -> list[TableJob]:
    """A document of one table a page: one table over pages 0-5, then two-page tables (6-7,
    8-9, ...). Its pages and detections are applied; the table merges ready first come back."""
    info = INFO.model_copy(update={"stop_page": pages, "num_pages": pages})
    for page in range(pages):
        result = PageResult(index=page, elements=[_table(page)])
        assembler.apply(PageDone(doc_id="tables", info=info, result=result), partition=0, at=1)
    jobs: list[TableJob] = []
    for first in range(pages - 1):
        pairs = [(0, 0)] if first < 5 or first % 2 == 0 else []
        step = assembler.apply(
            PairsDetected(doc_id="tables", first=first, pairs=pairs), partition=0, at=2
        )
        jobs += [job for job in step.jobs if isinstance(job, TableJob)]
    return jobs


def _answer_tables(assembler: Assembler, jobs: list[TableJob]) -> list[Step]:
    """Answer the jobs and those they lead to, each once (the agent's in-flight set)."""
    steps, queue = [], list(jobs)
    launched = {job.key for job in jobs}
    while queue:
        step = assembler.apply(_merged(queue.pop(0)), partition=0, at=3)
        fresh = [j for j in step.jobs if isinstance(j, TableJob) and j.key not in launched]
        launched.update(job.key for job in fresh)
        queue += fresh
        steps.append(step)
    return steps


def test_a_table_merge_outcome_does_not_look_at_every_page() -> None:
    pages = 400
    store = _CountingStore()
    assembler = Assembler(store)
    jobs = _tables_document(assembler, pages)
    # The long table's last link, and every two-page table: (pages - 6) / 2 of them.
    assert sorted(job.page for job in jobs) == [4, *range(6, pages - 1, 2)]
    store.reads = 0
    steps = _answer_tables(assembler, jobs)
    # Looking at every page on each outcome would be about 2,000 reads each, 400,000 in all.
    assert store.reads < 20 * pages
    assert len(steps) == 5 + (pages - 6) // 2  # each link merged once
    (result,) = results(steps)
    assert result.status == "completed"
    rows = "".join(f"<tr><td>p{page}</td></tr>" for page in range(6))
    assert result.document_text.startswith(f"<table>{rows}</table>")  # merged in chain order
    assert f"<table><tr><td>p{pages - 2}</td></tr><tr><td>p{pages - 1}</td></tr></table>" in (
        result.document_text
    )


def test_table_merges_finish_after_a_restart_and_ignore_repeated_outcomes() -> None:
    store: dict = {}
    jobs = {job.page: job for job in _tables_document(Assembler(store), 12)}
    assert sorted(jobs) == [4, 6, 8, 10]
    first = Assembler(store)  # restarted: no chains in memory, the whole document looked at
    step = first.apply(_merged(jobs.pop(4)), partition=0, at=3)  # the long table's last link
    ready = {job.page: job for job in step.jobs if isinstance(job, TableJob)}
    assert sorted(ready) == [3, 6, 8, 10]  # the next link, and those still unanswered
    assert first.apply(_merged(ready[6]), partition=0, at=3).jobs == []  # no link before it
    assert first.apply(_merged(ready[6]), partition=0, at=3).jobs == []  # a repeat: nothing new
    second = Assembler(store)  # restarted again, mid-chain
    steps = _answer_tables(second, [ready[3], ready[8], ready[10]])
    (result,) = results(steps)
    rows = "".join(f"<tr><td>p{page}</td></tr>" for page in range(6))
    assert result.status == "completed"
    assert result.document_text.startswith(f"<table>{rows}</table>")
