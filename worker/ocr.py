"""The OCR step: engine batches claimed, prefetched, read with escalation, and recorded under lease.

A message names one engine batch (pages of one mode, grouped by the dispatcher). The task claims
it under one lease and then keeps the engine busy: while the engine reads batch k, one helper
thread records batch k-1 (results, ledger, refill of the broker in one transaction) and another
claims batch k+1 straight from Postgres (dispatched, never-tried pages of the head-of-line mode,
grouped by predicted length), fetches and decodes its page images and has the engine prepare them
(resizing, tiles, tensors, prompt ids), so the device never waits for the database, storage or
the CPU half of the engine. At most one batch is prepared ahead; the task drains until nothing
is due or half its soft time limit has passed. Pages prefetched from other messages make those
messages find nothing to claim. Each page is read at its routed mode and read again one mode up
when the output shows it was under-read, within the policy's limits; every engine run is
accounted.

Whatever happens, claimed pages are never stranded: an exception releases the batch on the
engine (its attempt counted unless a dependency was down or the worker cancelled the task) and,
once the helper threads are done, whatever else is held (never at fault: attempts refunded); only
a crash of the process leaves them to their leases.
"""

from __future__ import annotations

import contextvars
import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PIL import Image
from sqlalchemy.orm import Session

from scriptorium import metrics
from scriptorium.dispatch import admit_and_dispatch, dispatch_pages
from scriptorium.errors import ReasonCode
from scriptorium.lifecycle.claims import (
    PageClaim,
    claim_next_batch,
    claim_pages,
    extend_leases,
    redispatch_foreign_pages,
    release_claim,
)
from scriptorium.lifecycle.recording import AttemptRecord, PageOutcome, record_page_outcomes
from scriptorium.logging import bind_context, bound_context, get_logger
from scriptorium.modes import Mode
from scriptorium.policy import RoutingPolicy
from scriptorium.settings import Settings
from scriptorium.states import PageState
from scriptorium.storage import figure_key
from worker.cancellation import TaskCancelled, stop_requested
from worker.engine.base import (
    BatchPageFailures,
    Engine,
    EngineFatal,
    PageFailed,
    PageInput,
    PageResult,
    PromptTask,
)
from worker.lease_keeper import keeping_lease
from worker.routing.escalation import choose_kept_result, judge
from worker.runtime import WorkerRuntime
from worker.task_base import backoff_s, dependency_of, is_transient

log = get_logger(__name__)
FATAL_EXIT_CODE = 70
T = TypeVar("T")
LOAD_THREADS = 4  # page images fetched and decoded at once while loading a batch
WINDOW_BATCHES = 4  # how far past the head of the line a prefetched batch may reach for length


@dataclass
class PageWork:
    """One claimed page moving through the escalation ladder."""

    claim: PageClaim
    image: Image.Image
    policy: RoutingPolicy
    mode: Mode
    ahead: PageInput | None = None  # the page as the engine prepared it while loading, at its routed mode
    results: list[PageResult] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    error: PageFailed | None = None
    done: bool = False
    verdict_reason: str = ""
    started: float = field(default_factory=time.monotonic)


class HeldClaims:
    """Every claim this worker holds (the batch on the engine, the one prefetched, the one being
    recorded): the lease keeper extends them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[tuple[uuid.UUID, int], PageClaim] = {}

    def add(self, claims: Sequence[PageClaim]) -> None:
        with self._lock:
            self._claims.update({(c.document_id, c.page_no): c for c in claims})

    def drop(self, claims: Sequence[PageClaim]) -> None:
        with self._lock:
            for claim in claims:
                self._claims.pop((claim.document_id, claim.page_no), None)

    def snapshot(self) -> list[PageClaim]:
        with self._lock:
            return list(self._claims.values())

    def still_held(self, pages: set[tuple[uuid.UUID, int]]) -> set[tuple[uuid.UUID, int]]:
        """Of ``pages``, those this worker still holds (a batch recorded meanwhile is not lost)."""
        with self._lock:
            return {page for page in pages if page in self._claims}


@dataclass
class FeedTimings:
    """Where a drain's time went: the engine, and what it waited for; the helper threads' stages."""

    engine_s: float = 0.0
    engine_waited_s: float = 0.0  # the engine idle, waiting for the next batch or the last record
    claim_s: float = 0.0  # claiming batches ahead (prefetch thread)
    load_s: float = 0.0  # fetching and decoding page images (prefetch thread)
    record_s: float = 0.0  # results, ledger and refill (record thread)

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in vars(self).items()}


@dataclass
class LoadedBatch:
    """A claimed batch with its page images in memory, ready for the engine."""

    claims: list[PageClaim]
    work: list[PageWork]


def ocr_batch(runtime: WorkerRuntime, pages: Sequence[tuple[uuid.UUID, int]]) -> None:
    """Read the message's batch, then go on draining due batches (see the module docstring)."""
    engine = runtime.require_ocr_engine()
    documents = {document_id for document_id, _ in pages}
    if len(documents) == 1:
        bind_context(document_id=str(documents.pop()))
    claims = _claim_listed(runtime, engine.model, pages)
    if not claims:
        log.info("batch.skipped", why="not claimable (duplicate, cancelled, finished or exhausted)")
        return
    FeedPipeline(runtime, engine).drain(claims)


class FeedPipeline:
    """Double buffering: the engine reads on this thread; one helper thread records the previous
    batch while another claims and loads the next, so the engine waits only for the slower of the
    two, not for their sum."""

    def __init__(self, runtime: WorkerRuntime, engine: Engine) -> None:
        self.runtime = runtime
        self.engine = engine
        self.held = HeldClaims()
        limits = runtime.settings.limits
        self.deadline = time.monotonic() + limits.page_soft_time_limit_s / 2
        self.batches = 0
        self.timings = FeedTimings()

    def drain(self, first: list[PageClaim]) -> None:
        self.held.add(first)
        try:
            self._feed(first)
        except BaseException as error:
            self._release_held(error)
            if isinstance(error, EngineFatal):
                log.critical("engine.fatal", error=str(error))
                os._exit(FATAL_EXIT_CODE)  # the context is poisoned; the pool replaces this process
            raise
        log.info("feed.drained", batches=self.batches, **self.timings.rounded())

    def _feed(self, first: list[PageClaim]) -> None:
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr-prefetch") as prefetcher,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr-record") as recorder,
            _lease_keeper(self.runtime, self.held),
        ):
            current: LoadedBatch | None = self._load_or_release(first)
            recording: Future[None] | None = None
            while current is not None:
                prefetch = _submit(prefetcher, self._prefetch) if self._may_go_on() else None
                try:
                    self._read(current)
                except BaseException as error:  # the batch on the engine: its attempt may count
                    _release(self.runtime, current.claims, error)
                    self.held.drop(current.claims)
                    raise
                waited = time.monotonic()
                if recording is not None:
                    recording.result()  # the previous batch is written before this one is queued
                recording = _submit(recorder, self._record, current)
                current = prefetch.result() if prefetch is not None else None
                if current is not None and stop_requested():  # the worker is stopping: hand it back
                    _release(self.runtime, current.claims, None, never_read=True, resend=True)
                    self.held.drop(current.claims)
                    current = None
                self.timings.engine_waited_s += time.monotonic() - waited
            if recording is not None:
                recording.result()

    def _may_go_on(self) -> bool:
        """Whether to prepare another batch: not past the drain's deadline, the worker not stopping."""
        return time.monotonic() < self.deadline and not stop_requested()

    def _release_held(self, error: BaseException) -> None:
        """After a failure, once the helper threads are done: hand back what is still held (a
        prefetched batch, a batch read but not yet recorded). None of it is at fault, and no
        message of this task will bring it back, so it is sent again at once."""
        rest = self.held.snapshot()
        if rest:
            _release(self.runtime, rest, error, never_read=True, resend=True)
            self.held.drop(rest)

    def _read(self, batch: LoadedBatch) -> None:
        started = time.monotonic()
        with _batch_context(batch.claims):
            _read_with_escalation(self.engine, batch.work, self.runtime.settings)
        seconds = time.monotonic() - started
        metrics.observe_engine_batch(seconds, pages=len(batch.work))
        self.timings.engine_s += seconds
        self.batches += 1

    def _load_or_release(self, claims: list[PageClaim]) -> LoadedBatch:
        """Fetch and decode the batch's page images, several at a time (storage round trips and
        PNG decoding overlap); a failure hands the whole batch back unread."""
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=min(LOAD_THREADS, len(claims))) as loaders:
                work = list(loaders.map(lambda claim: _load(self.runtime, self.engine, claim), claims))
            self.timings.load_s += time.monotonic() - started
            return LoadedBatch(claims, work)
        except BaseException as error:
            _release(self.runtime, claims, error, never_read=True)
            self.held.drop(claims)
            raise

    def _prefetch(self) -> LoadedBatch | None:
        """Claim the next batch from Postgres and load its images (prefetch thread)."""
        settings = self.runtime.settings
        started = time.monotonic()
        with self.runtime.units.committing() as uow:
            claims = claim_next_batch(
                uow.session,
                model=self.engine.model,
                batch_size=settings.engine.max_batch_pages,
                window_batches=WINDOW_BATCHES,
                owner=self.runtime.identity,
                lease_s=settings.limits.lease_s,
            )
        self.timings.claim_s += time.monotonic() - started
        if not claims:
            return None
        self.held.add(claims)
        log.info("batch.prefetched", batch=len(claims), mode=claims[0].planned_mode)
        return self._load_or_release(claims)

    def _record(self, batch: LoadedBatch) -> None:
        """Store figures, write results, account tokens and refill the broker (record thread)."""
        try:
            started = time.monotonic()
            with _batch_context(batch.claims):
                outcomes = [_outcome(self.runtime, self.engine, item) for item in batch.work]
                _record_through_outage(self.runtime, batch.work, outcomes)
            self.timings.record_s += time.monotonic() - started
        except BaseException as error:
            _release(self.runtime, batch.claims, error)
            raise
        finally:
            self.held.drop(batch.claims)


def _submit(helper: ThreadPoolExecutor, job: Callable[..., T], *args: Any) -> Future[T]:
    """Run ``job`` on a helper thread with this task's log context (task id and all)."""
    return helper.submit(contextvars.copy_context().run, job, *args)


def _batch_context(claims: Sequence[PageClaim]) -> AbstractContextManager[Any]:
    """Log context of one batch: its request, and its document when it has only one."""
    documents = {claim.document_id for claim in claims}
    return bound_context(
        request_id=claims[0].request_id if claims else None,
        document_id=str(documents.pop()) if len(documents) == 1 else None,
        batch=len(claims),
    )


def _record_through_outage(
    runtime: WorkerRuntime, work: Sequence[PageWork], outcomes: Sequence[PageOutcome]
) -> None:
    """Record, waiting out a database outage: the pages are read, and reading them again would
    cost GPU time and an attempt. The lease keeper extends the leases again once the database
    answers (the sweeper grants a lease of grace after an outage); past the soft time limit the
    wait ends and the pages are released with their attempts refunded."""
    deadline = time.monotonic() + runtime.settings.limits.page_soft_time_limit_s
    retries = 0
    while True:
        try:
            _record(runtime, work, outcomes)
            return
        except Exception as error:
            if not is_transient(error) or time.monotonic() >= deadline:
                raise
            delay = min(backoff_s(retries), max(0.1, deadline - time.monotonic()))
            retries += 1
            metrics.count_dependency_wait(dependency_of(error), "ocr.record")
            log.warning(
                "page.record_waiting",
                dependency=dependency_of(error),
                error=str(error)[:300],
                retry_in_s=delay,
            )
            time.sleep(delay)


def _claim_listed(
    runtime: WorkerRuntime, model: str, pages: Sequence[tuple[uuid.UUID, int]]
) -> list[PageClaim]:
    """Claim the message's pages of ``model``; pages of another family (a misrouted message) are
    handed to the dispatcher for their own family's queue, never read here."""
    settings = runtime.settings
    with runtime.units.committing() as uow:
        claims = claim_pages(
            uow.session, pages, model=model, owner=runtime.identity, lease_s=settings.limits.lease_s
        )
        misrouted = {}
        if len(claims) < len(pages):
            misrouted = redispatch_foreign_pages(uow.session, pages, model=model)
    for family, foreign in misrouted.items():
        log.warning("batch.misrouted", served=model, pages_model=family, pages=len(foreign))
    if claims:
        log.info("batch.claimed", batch=len(claims), mode=claims[0].planned_mode, listed=len(pages))
    return claims


def _release(
    runtime: WorkerRuntime,
    claims: Sequence[PageClaim],
    error: BaseException | None,
    *,
    never_read: bool = False,
    resend: bool = False,
) -> None:
    """Hand claimed pages back at once instead of waiting for their leases to expire.

    Pages never read, and pages whose read was cut short by an outage of a dependency or by the
    worker cancelling the task, are not at fault: their attempts are refunded. Anything else (a
    time limit, an unexpected error) counts, so a poison page still dead-letters. ``resend``: no
    retry of this task covers the pages (a cancelled task has none), so the dispatcher sends them.
    """
    at_fault = not never_read and error is not None and not is_transient(error)
    resend = resend or isinstance(error, TaskCancelled)
    try:
        with runtime.units.committing() as uow:
            for claim in claims:
                release_claim(uow.session, claim, page_at_fault=at_fault, resend=resend)
    except Exception as release_error:  # the database is away too; the leases will expire
        log.warning("page.release_failed", error=str(release_error))
        return
    why = type(error).__name__ if error is not None else "prefetched, not read"
    log.warning("page.released", batch=len(claims), why=why, attempt_counted=at_fault)


def _load(runtime: WorkerRuntime, engine: Engine, claim: PageClaim) -> PageWork:
    """Fetch and decode the page image, and let the engine prepare it for its routed mode (the
    CPU half of reading it), so the device finds the batch ready."""
    data = runtime.store.get_bytes(claim.image_key)
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    work = PageWork(
        claim=claim,
        image=image,
        policy=RoutingPolicy.model_validate(claim.routing_policy),
        mode=Mode(claim.planned_mode),
    )
    work.ahead = engine.preprocess(_page_input(work, work.mode))
    return work


def _page_input(item: PageWork, mode: Mode) -> PageInput:
    """The page to read at ``mode``: the one prepared ahead when it was prepared for that mode."""
    if item.ahead is not None and item.ahead.mode is mode:
        return item.ahead
    return PageInput(
        page_no=item.claim.page_no, image=item.image, mode=mode, task=PromptTask(item.claim.task)
    )


def _read_with_escalation(engine: Engine, work: Sequence[PageWork], settings: Settings) -> None:
    pending = list(work)
    while pending:
        by_mode: dict[Mode, list[PageWork]] = {}
        for item in pending:
            by_mode.setdefault(item.mode, []).append(item)
        for mode, items in by_mode.items():
            results = _run_isolating_failures(engine, items, mode)
            for item, result in zip(items, results, strict=True):
                if result is not None:
                    _judge(item, result, settings)
        pending = [item for item in pending if not item.done]


def _run_isolating_failures(engine: Engine, items: Sequence[PageWork], mode: Mode) -> list[PageResult | None]:
    inputs = [_page_input(item, mode) for item in items]
    for item in items:
        item.ahead = None  # its tensors are not needed once read; a batch's can be hundreds of MB
    try:
        outcomes: list[PageResult | PageFailed] = list(engine.run(inputs))
    except BatchPageFailures as failures:
        outcomes = failures.outcomes
    except PageFailed as failure:
        outcomes = [failure] if len(items) == 1 else _one_by_one(engine, inputs)
    results: list[PageResult | None] = []
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, PageFailed):
            item.error = outcome
            item.done = True
            results.append(None)
        else:
            results.append(outcome)
    return results


def _one_by_one(engine: Engine, inputs: Sequence[PageInput]) -> list[PageResult | PageFailed]:
    """Find the page that failed a batch (engines that cannot tell which one did)."""
    outcomes: list[PageResult | PageFailed] = []
    for page_input in inputs:
        try:
            outcomes.append(engine.run([page_input])[0])
        except PageFailed as failure:
            outcomes.append(failure)
    return outcomes


def _judge(item: PageWork, result: PageResult, settings: Settings) -> None:
    verdict = judge(
        result,
        item.policy,
        escalations_so_far=len(item.results),
        page_size=item.image.size,
        min_crops=settings.engine.min_crops,
        max_crops=settings.engine.max_crops,
    )
    item.results.append(result)
    metrics.observe_engine_run(
        result.mode.value,
        vision_tokens=result.tokens.vision,
        output_tokens=result.tokens.output,
        seconds=result.engine_seconds,
    )
    item.attempts.append(
        AttemptRecord(
            mode=result.mode.value,
            grid=list(result.grid) if result.grid else None,
            vision_tokens=result.tokens.vision,
            valid_tokens=result.tokens.valid,
            placeholder_tokens=result.tokens.placeholders,
            prompt_tokens=result.tokens.prompt,
            output_tokens=result.tokens.output,
            engine_seconds=result.engine_seconds,
            finished=result.finished,
            repetition=result.repetition,
            escalation=len(item.results) > 1,
            verdict=verdict.reason,
        )
    )
    item.verdict_reason = verdict.reason
    if verdict.escalate and verdict.next_mode is not None:
        log.info(
            "page.escalate", page_no=item.claim.page_no, to=verdict.next_mode.value, reason=verdict.reason
        )
        metrics.count_escalation(result.mode.value, verdict.next_mode.value)
        item.mode = verdict.next_mode
    else:
        item.done = True


def _outcome(runtime: WorkerRuntime, engine: Engine, item: PageWork) -> PageOutcome:
    claim = item.claim
    if not item.results:
        failure = item.error or PageFailed(claim.page_no, "no result")
        return PageOutcome(
            state=PageState.FAILED,
            attempts=item.attempts,
            model_revision=engine.revision,
            model=engine.model,
            error_code=ReasonCode.ENGINE_ERROR,
            error_message=failure.message,
        )
    kept, under_read = choose_kept_result(item.results, item.policy)
    return PageOutcome(
        state=PageState.DONE,
        attempts=item.attempts,
        model_revision=kept.model_revision or engine.revision,
        model=kept.model or engine.model,
        mode=kept.mode.value,
        grid=list(kept.grid) if kept.grid else None,
        markdown=kept.markdown,
        blocks=[
            {"label": b.label, "boxes": [list(box) for box in b.boxes], "text": b.text} for b in kept.blocks
        ],
        figures=_store_figures(runtime, claim, kept),
        finished=kept.finished,
        under_read=under_read,
        compression_ratio=round(kept.tokens.output / kept.tokens.vision, 3) if kept.tokens.vision else None,
        error_code=ReasonCode.UNDER_READ if under_read else None,
        error_message=item.verdict_reason if under_read else None,
    )


def _record(runtime: WorkerRuntime, work: Sequence[PageWork], outcomes: Sequence[PageOutcome]) -> None:
    """Write the batch's results and top the broker up, in one transaction.

    When the batch finished a document, the refill also admits what waited for it (duplicates,
    paused documents); otherwise it only sends due pages.
    """
    limits = runtime.settings.limits
    with runtime.units.committing() as uow:
        recorded = record_page_outcomes(uow, list(zip((item.claim for item in work), outcomes, strict=True)))
        finished = [result.event for result in recorded if result.event is not None]
        refill = admit_and_dispatch if finished else dispatch_pages
        refill(
            uow,
            depth=limits.dispatch_depth,
            lost_after_s=limits.lost_message_after_s,
            batch_pages=runtime.settings.engine.max_batch_pages,
        )
    for item, outcome, result in zip(work, outcomes, recorded, strict=True):
        claim = item.claim
        metrics.count_page(
            outcome.mode or item.mode.value,
            metrics.page_outcome(outcome.state, under_read=outcome.under_read, recorded=result.written),
            seconds=time.monotonic() - item.started,
        )
        if not result.written:
            log.warning("page.lease_lost", page_no=claim.page_no, why="another worker owns the page now")
            continue
        log.info(
            "page.recorded",
            document_id=str(claim.document_id),
            page_no=claim.page_no,
            state=outcome.state,
            mode=outcome.mode,
            engine_runs=len(item.attempts),
        )
        if result.event is not None:
            log.info("document.finished", document_id=str(claim.document_id), event_type=result.event.type)


def _store_figures(runtime: WorkerRuntime, claim: PageClaim, result: PageResult) -> list[dict[str, Any]]:
    stored = []
    for figure in result.figures:
        buffer = io.BytesIO()
        figure.image.convert("RGB").save(buffer, format="JPEG", quality=90)
        key = figure_key(claim.tenant_id, claim.document_id, figure.name)
        runtime.store.put_bytes(key, buffer.getvalue(), content_type="image/jpeg")
        stored.append({"name": figure.name, "key": key, "box": list(figure.box)})
    return stored


def _lease_keeper(runtime: WorkerRuntime, held: HeldClaims) -> AbstractContextManager[None]:
    """Extend the leases of every held claim while the worker has them."""

    def extend(session: Session) -> None:
        lost = held.still_held(
            extend_leases(session, held.snapshot(), lease_s=runtime.settings.limits.lease_s)
        )
        if lost:
            log.warning("page.lease_lost", pages=sorted(page for _, page in lost))

    return keeping_lease(runtime, extend, name="pages")
