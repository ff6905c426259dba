"""Intake on the CPU queue: expanding batches into documents, and watched prefixes.

``expand_batch`` runs a batch's intake under the batch's lease, within a time budget: it
discovers inputs (unpacks an uploaded archive into object storage, lists a prefix page by page
after a persisted marker, or reads a manifest line by line) and turns pending inputs into
documents, copying objects from their named source over a few parallel streams. When the
budget is spent it hands over to a fresh message. After a source failure it stops and the
sweeper sends the batch again once the message counts as lost (the back-off); runs that keep
failing give the batch up.

``poll_watches`` (beat) lists each due watch after its marker; ``ingest_watch`` (sent when a
notification arrives, and run by the poller) turns a watch's recorded objects into documents.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from scriptorium.acceptance import (
    Dedup,
    DocumentOptions,
    DocumentSpec,
    OptionsRejected,
    accept_document,
    new_document,
    resolve_spec,
)
from scriptorium.batches.archives import ArchiveLimits, unpack_archive
from scriptorium.batches.expansion import (
    NewItem,
    add_items,
    awaiting_preparation,
    claim_intake,
    count_fetch_failure,
    fail_intake,
    finish_intake,
    hand_over,
    ingest_item,
    input_key,
    pending_items,
    reject_item,
)
from scriptorium.batches.leftovers import discard_leftovers
from scriptorium.batches.manifest import ManifestLine, decode_manifest, iter_manifest
from scriptorium.batches.states import BatchKind, BatchState, IntakeReason, IntakeRefused, ItemState
from scriptorium.batches.watches import (
    ObjectClaim,
    SeenBy,
    SeenObject,
    advance_marker,
    claim_objects,
    due_for_polling,
    find_watch,
    mark_ingested,
    object_document_id,
    record_objects,
    reject_object,
    release_after_failure,
    still_held,
)
from scriptorium.db.models import Batch, BatchItem, Document, Tenant, Watch
from scriptorium.errors import InputRejected
from scriptorium.logging import get_logger
from scriptorium.model_choice import ModelRejected
from scriptorium.settings import ModelsSettings
from scriptorium.sources import (
    ListedObject,
    SourceRegistry,
    SourceUnavailable,
    check_object_key,
    printable,
)
from scriptorium.states import Lane
from scriptorium.storage import StorageUnavailable, StoredObject, UploadTooLarge, raw_key
from worker.runtime import WorkerRuntime
from worker.task_base import is_transient

log = get_logger(__name__)
INTAKE_ATTEMPTS = 3  # intake runs of a batch that may fail in a row before it is given up
DISCOVERY_CHUNK = 1000  # inputs recorded per transaction
INGEST_CHUNK = 64  # inputs fetched (in parallel) and turned into documents per round
WATCHES_PER_POLL = 50
_TRANSIENT = (SourceUnavailable, StorageUnavailable)
_registries: dict[int, SourceRegistry] = {}


def sources_of(runtime: WorkerRuntime) -> SourceRegistry:
    """The process's source clients (connection pools are kept between tasks)."""
    registry = _registries.get(id(runtime))
    if registry is None:
        registry = _registries[id(runtime)] = SourceRegistry(runtime.settings.sources)
    return registry


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def spent(self) -> bool:
        return time.monotonic() - self.started >= self.seconds


def _budget(runtime: WorkerRuntime) -> Budget:
    soft_limit = runtime.settings.limits.page_soft_time_limit_s
    return Budget(min(runtime.settings.intake.run_budget_s, soft_limit / 2))


def _lease_s(runtime: WorkerRuntime) -> int:
    return runtime.settings.limits.page_hard_time_limit_s + 30  # no run outlives its hard time limit


@dataclass(frozen=True)
class Owner:
    """The tenant a batch or watch belongs to, as intake needs it."""

    tenant_id: uuid.UUID
    name: str
    routing_policy: dict[str, Any] | None
    default_model: str | None


def _owner(session: Session, tenant_id: uuid.UUID) -> Owner:
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    return Owner(
        tenant_id=tenant.id,
        name=tenant.name,
        routing_policy=tenant.routing_policy,
        default_model=tenant.default_model,
    )


def _spec(options: DocumentOptions, owner: Owner, models: ModelsSettings) -> DocumentSpec | IntakeRefused:
    try:
        return resolve_spec(
            options,
            tenant_policy=owner.routing_policy,
            default_priority=Lane.BULK,
            models=models,
            tenant_model=owner.default_model,
        )
    except (OptionsRejected, ModelRejected) as rejected:
        return IntakeRefused(IntakeReason.INVALID_OPTIONS, f"{rejected.code}: {rejected.message}")
    except InputRejected as rejected:
        return IntakeRefused(IntakeReason.INVALID_OPTIONS, f"{rejected.reason.value}: {rejected.message}")


@dataclass(frozen=True)
class Copied:
    """An object copied from its source into storage, or why it was not."""

    stored: StoredObject | None = None
    refusal: IntakeRefused | None = None  # permanent: the input is rejected
    transient: str | None = None  # worth another try later


def copy_object(
    runtime: WorkerRuntime, owner: Owner, *, source_name: str, bucket: str, key: str, target: str
) -> Copied:
    """Stream one object from a named source into storage at ``target``, hashing it on the way."""
    limit = runtime.settings.limits.max_upload_bytes
    try:
        source = sources_of(runtime).get(source_name, tenant_name=owner.name, bucket=bucket)
        with source.open(bucket, key) as stream:
            return Copied(stored=runtime.store.put_stream(target, stream, limit=limit))
    except IntakeRefused as refused:
        return Copied(refusal=refused)
    except UploadTooLarge as error:
        return Copied(
            refusal=IntakeRefused(IntakeReason.TOO_LARGE, f"the object exceeds {error.limit} bytes")
        )
    except _TRANSIENT as error:
        return Copied(transient=str(error))


# --- batches ------------------------------------------------------------------------------------


class RunEnd(Enum):
    FINISHED = "finished"  # every input is known and none is pending
    BUDGET = "budget"  # time is up: the next message goes out at once
    BACK_OFF = "back_off"  # inputs failed to be fetched: the sweeper sends the next one later
    WINDOW_FULL = "window_full"  # enough documents wait for preparation: look again shortly
    STOPPED = "stopped"  # the batch left ``expanding`` (cancelled)


def expand_batch(runtime: WorkerRuntime, batch_id: uuid.UUID) -> None:
    budget = _budget(runtime)
    with runtime.units.committing() as uow:
        batch = claim_intake(uow.session, batch_id, lease_s=_lease_s(runtime), max_attempts=INTAKE_ATTEMPTS)
        if batch is None:
            log.info(
                "intake.skipped", batch_id=str(batch_id), why="not claimable (duplicate, cancelled or done)"
            )
            return
        owner = _owner(uow.session, batch.tenant_id)
        uow.session.expunge(batch)
    log.info("intake.started", batch_id=str(batch_id), kind=batch.kind, inputs=batch.inputs_total)
    try:
        end = BatchRun(runtime, batch, owner, budget).run()
    except IntakeRefused as refused:
        with runtime.units.committing() as uow:
            fail_intake(uow.session, batch_id, refused.reason, refused.message)
        _discard_leftovers(runtime, batch_id)
        log.info(
            "intake.refused", batch_id=str(batch_id), reason=refused.reason.value, detail=refused.message
        )
        return
    except _TRANSIENT as error:
        with runtime.units.committing() as uow:
            hand_over(uow.session, batch_id, failed=True)
        log.warning("intake.interrupted", batch_id=str(batch_id), error=str(error))
        return
    except Exception as error:  # a bug or a refusal nobody foresaw: never leave the batch expanding
        if is_transient(error):
            raise  # an outage: the task waits it out (worker.task_base)
        _intake_failed(runtime, batch, error)
        return
    with runtime.units.committing() as uow:
        if end is RunEnd.FINISHED:
            finish_intake(uow.session, batch_id)
        elif end is not RunEnd.STOPPED:
            hand_over(uow.session, batch_id)
        if end is RunEnd.BUDGET:
            uow.outbox.expand_batch(batch_id)
        elif end is RunEnd.WINDOW_FULL:
            uow.outbox.expand_batch(batch_id, countdown=runtime.settings.intake.window_poll_s)
    if end is RunEnd.STOPPED:
        _discard_leftovers(runtime, batch_id)
    log.info("intake.run_ended", batch_id=str(batch_id), end=end.value)


def _discard_leftovers(runtime: WorkerRuntime, batch_id: uuid.UUID) -> None:
    with runtime.sessions() as session:
        discard_leftovers(session, runtime.store, batch_id)


def _intake_failed(runtime: WorkerRuntime, batch: Batch, error: Exception) -> None:
    """A run failed unexpectedly. It counts towards giving the batch up: the sweeper sends the
    next run after the lost-message delay, and the run that uses the last attempt fails the
    batch (``intake_exhausted``, with the error) instead of leaving it ``expanding``."""
    message = f"intake failed {batch.intake_attempts} times; last: {type(error).__name__}: {error}"[:2000]
    with runtime.units.committing() as uow:
        if batch.intake_attempts >= INTAKE_ATTEMPTS:
            fail_intake(uow.session, batch.id, IntakeReason.INTAKE_EXHAUSTED, message)
        else:
            hand_over(uow.session, batch.id, failed=True)
    _discard_leftovers(runtime, batch.id)
    log.exception(
        "intake.failed", batch_id=str(batch.id), attempts=batch.intake_attempts, error=str(error)[:500]
    )


class BatchRun:
    """One intake run of one batch."""

    def __init__(self, runtime: WorkerRuntime, batch: Batch, owner: Owner, budget: Budget) -> None:
        self.runtime = runtime
        self.batch = batch
        self.owner = owner
        self.budget = budget
        self.defaults = DocumentOptions.parse(batch.options)
        self._manifest: list[str] | None = None

    def run(self) -> RunEnd:
        while not self.budget.spent:
            with self.runtime.sessions() as session:
                current = session.get(Batch, self.batch.id)
                assert current is not None
                state, complete, marker = current.state, current.inputs_complete, current.intake_marker
            if state != BatchState.EXPANDING:
                return RunEnd.STOPPED
            if not complete:
                self.discover(marker)
            handled, failed, window_full = self.ingest_pending()
            if failed:
                return RunEnd.BACK_OFF
            if window_full:
                return RunEnd.WINDOW_FULL
            if complete and not handled:
                return RunEnd.FINISHED
        return RunEnd.BUDGET

    # --- discovery -----------------------------------------------------------------------------

    def discover(self, marker: str | None) -> None:
        kind = BatchKind(self.batch.kind)
        if kind is BatchKind.ARCHIVE:
            self.stage_archive()
        elif kind is BatchKind.PREFIX:
            self.list_prefix(marker)
        elif kind is BatchKind.MANIFEST:
            self.read_manifest(int(marker or 0))

    def stage_archive(self) -> None:
        """Unpack the archive entry by entry into each input's storage key, then record every input
        at once; a refused archive leaves nothing behind."""
        settings = self.runtime.settings
        limits = ArchiveLimits.from_settings(
            settings.intake, max_entry_bytes=settings.limits.max_upload_bytes
        )
        visitor = _StagingVisitor(self.runtime, self.batch)
        try:
            with tempfile.TemporaryDirectory(prefix="scriptorium-archive-") as scratch:
                archive = Path(scratch) / "archive"
                with archive.open("wb") as target:
                    self.runtime.store.download_to(str(self.batch.source["key"]), target)
                summary = unpack_archive(archive, limits, visitor)
            with self.runtime.units.committing() as uow:
                recorded = add_items(uow.session, self.batch.id, visitor.items, marker=None, complete=True)
        except BaseException:
            visitor.discard()
            raise
        if recorded is None:  # the batch was cancelled while its archive was unpacked
            visitor.discard()
            return
        log.info(
            "intake.archive_unpacked",
            files=summary.files,
            skipped=summary.skipped,
            bytes=summary.expanded_bytes,
        )

    def list_prefix(self, marker: str | None) -> None:
        source_name, bucket = str(self.batch.source["source"]), str(self.batch.source["bucket"])
        source = sources_of(self.runtime).get(source_name, tenant_name=self.owner.name, bucket=bucket)
        listed = source.list_after(
            bucket, str(self.batch.source.get("prefix", "")), after=marker, limit=DISCOVERY_CHUNK
        )
        items = [_listed_item(source.name, bucket, obj) for obj in listed]
        with self.runtime.units.committing() as uow:
            add_items(
                uow.session,
                self.batch.id,
                items,
                marker=listed[-1].key if listed else marker,
                complete=len(listed) < DISCOVERY_CHUNK,
            )

    def read_manifest(self, start: int) -> None:
        if self._manifest is None:
            self._manifest = decode_manifest(self.runtime.store.get_bytes(str(self.batch.source["key"])))
        items: list[NewItem] = []
        last_line = start
        for line in iter_manifest(self._manifest, start=start):
            items.append(self._manifest_item(line))
            last_line = line.line_no
            if len(items) >= DISCOVERY_CHUNK:
                break
        complete = len(items) < DISCOVERY_CHUNK
        with self.runtime.units.committing() as uow:
            add_items(uow.session, self.batch.id, items, marker=str(last_line), complete=complete)

    def _manifest_item(self, line: ManifestLine) -> NewItem:
        refusal = line.refusal
        if refusal is None and line.ref is not None:
            try:
                sources_of(self.runtime).check(
                    line.ref.source, tenant_name=self.owner.name, bucket=line.ref.bucket
                )
            except IntakeRefused as refused:
                refusal = refused
        if refusal is not None or line.ref is None:
            reason = refusal.reason.value if refusal else IntakeReason.INVALID_MANIFEST_LINE
            return NewItem(
                name=line.name,
                origin={},
                state=ItemState.REJECTED,
                error_code=reason,
                error_message=refusal.message if refusal else "unreadable line",
            )
        return NewItem(
            name=line.name,
            origin={"source": line.ref.source, "bucket": line.ref.bucket, "key": line.ref.key},
            options=line.options.model_dump(mode="json", exclude_none=True) if line.options else None,
        )

    # --- ingestion -----------------------------------------------------------------------------

    def ingest_pending(self) -> tuple[int, int, bool]:
        """Turn pending inputs into documents until none is left, the budget is spent or the
        prepare window is full; returns (inputs handled, inputs that failed transiently and stay
        pending, whether the window is full)."""
        handled = failed = 0
        after = 0
        window = self.runtime.settings.intake.prepare_window
        while not self.budget.spent:
            with self.runtime.sessions() as session:
                room = window - awaiting_preparation(session, self.batch.id)
                limit = min(INGEST_CHUNK, room)
                items = (
                    pending_items(session, self.batch.id, after_seq=after, limit=limit) if limit > 0 else []
                )
            if not items:
                return handled, failed, room <= 0 and self._has_pending()
            after = items[-1].seq
            specs = {
                item.seq: _spec(
                    DocumentOptions.parse(item.options or {}).over(self.defaults),
                    self.owner,
                    self.runtime.settings.models,
                )
                for item in items
            }
            ready = [item for item in items if isinstance(specs[item.seq], DocumentSpec)]
            workers = max(1, self.runtime.settings.intake.copy_concurrency)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intake-copy") as pool:
                copies = list(pool.map(self.fetch, ready))
            for item, copied in zip(ready, copies, strict=True):
                spec = specs[item.seq]
                assert isinstance(spec, DocumentSpec)
                failed += self.settle(item, copied, spec)
            with self.runtime.units.committing() as uow:
                for item in items:
                    refusal = specs[item.seq]
                    if isinstance(refusal, IntakeRefused):
                        reject_item(uow.session, self.batch.id, item.seq, refusal.reason, refusal.message)
            handled += len(items)
        return handled, failed, False

    def _has_pending(self) -> bool:
        with self.runtime.sessions() as session:
            return bool(pending_items(session, self.batch.id, after_seq=0, limit=1))

    def fetch(self, item: BatchItem) -> Copied:
        """The input's bytes under its storage key: staged already, or copied from its source."""
        key = input_key(self.batch, item.seq)
        origin = item.origin
        if "staged" in origin:
            assert item.size_bytes is not None
            assert item.sha256 is not None
            return Copied(stored=StoredObject(key=key, size=item.size_bytes, sha256=item.sha256))
        return copy_object(
            self.runtime,
            self.owner,
            source_name=str(origin["source"]),
            bucket=str(origin["bucket"]),
            key=str(origin["key"]),
            target=key,
        )

    def settle(self, item: BatchItem, copied: Copied, spec: DocumentSpec) -> int:
        """Record what became of one fetched input; 1 when it failed transiently."""
        with self.runtime.unit_of_work() as uow:
            if copied.stored is not None:
                accepted = ingest_item(
                    uow,
                    batch=self.batch,
                    item=item,
                    stored=copied.stored,
                    spec=spec,
                    dedup=Dedup.from_settings(self.runtime.settings, enabled=spec.dedup),
                )
                if accepted is not None:
                    uow.commit()
                return 0
            if copied.refusal is not None:
                reject_item(
                    uow.session, self.batch.id, item.seq, copied.refusal.reason, copied.refusal.message
                )
                uow.commit()
                return 0
            count_fetch_failure(
                uow.session,
                self.batch.id,
                item.seq,
                max_attempts=self.runtime.settings.intake.source_attempts,
                message=copied.transient or "the source is unavailable",
            )
            uow.commit()
        return 1


def _listed_item(source_name: str, bucket: str, obj: ListedObject) -> NewItem:
    """A listed object as an input; one whose key no input may name is rejected, not fetched."""
    try:
        check_object_key(obj.key)
    except IntakeRefused as refused:
        return NewItem(
            name=printable(obj.key),
            origin={},
            state=ItemState.REJECTED,
            size_bytes=obj.size,
            error_code=refused.reason.value,
            error_message=refused.message,
        )
    return NewItem(
        name=obj.key,
        origin={"source": source_name, "bucket": bucket, "key": obj.key, "etag": obj.etag},
        size_bytes=obj.size,
    )


class _StagingVisitor:
    """Stores each archive file under its input's key, and remembers every entry in order."""

    def __init__(self, runtime: WorkerRuntime, batch: Batch) -> None:
        self._runtime = runtime
        self._batch = batch
        self.items: list[NewItem] = []
        self._keys: list[str] = []

    def file(self, name: str, stream: IO[bytes], size: int) -> None:
        key = input_key(self._batch, len(self.items) + 1)
        self._keys.append(key)
        stored = self._runtime.store.put_stream(key, stream, limit=max(size, 1))
        self.items.append(
            NewItem(
                name=printable(name), origin={"staged": key}, size_bytes=stored.size, sha256=stored.sha256
            )
        )

    def skipped(self, name: str, reason: IntakeReason, message: str) -> None:
        state = ItemState.SKIPPED if reason is IntakeReason.NOT_A_REGULAR_FILE else ItemState.REJECTED
        self.items.append(
            NewItem(
                name=printable(name), origin={}, state=state, error_code=reason.value, error_message=message
            )
        )

    def discard(self) -> None:
        for key in self._keys:
            try:
                self._runtime.store.delete(key)
            except StorageUnavailable:
                log.warning("intake.staged_left_behind", key=key)


# --- watched prefixes ---------------------------------------------------------------------------


def poll_watches(runtime: WorkerRuntime) -> int:
    """List each due watch after its marker, record what is new, and ingest; returns objects recorded."""
    intake = runtime.settings.intake
    with runtime.units.committing() as uow:
        watches = due_for_polling(
            uow.session, interval_s=intake.watch_poll_interval_s, limit=WATCHES_PER_POLL
        )
        owners = {watch.tenant_id: _owner(uow.session, watch.tenant_id) for watch in watches}
        for watch in watches:
            uow.session.expunge(watch)
    recorded = 0
    for watch in watches:
        owner = owners[watch.tenant_id]
        try:
            source = sources_of(runtime).get(watch.source, tenant_name=owner.name, bucket=watch.bucket)
            listed = source.list_after(
                watch.bucket, watch.prefix, after=watch.poll_marker, limit=intake.watch_list_limit
            )
        except (IntakeRefused, SourceUnavailable) as error:
            log.warning("watch.poll_failed", watch_id=str(watch.id), error=str(error))
            continue
        if listed:
            with runtime.units.committing() as uow:
                seen = [SeenObject(obj.key, obj.etag, obj.size) for obj in listed]
                recorded += record_objects(uow.session, watch.id, seen, SeenBy.POLL)
                advance_marker(uow.session, watch.id, listed[-1].key)
        ingest_watch(runtime, watch.id)
    return recorded


def ingest_watch(runtime: WorkerRuntime, watch_id: uuid.UUID) -> int:
    """Turn the watch's recorded objects into documents; returns how many documents were made."""
    budget = _budget(runtime)
    with runtime.sessions() as session:
        watch = find_watch(session, watch_id)
        if watch is None or not watch.enabled:
            return 0
        owner = _owner(session, watch.tenant_id)
        session.expunge(watch)
    spec = _spec(DocumentOptions.parse(watch.options), owner, runtime.settings.models)
    workers = max(1, runtime.settings.intake.copy_concurrency)
    made = 0
    while not budget.spent:
        with runtime.units.committing() as uow:
            claims = claim_objects(uow.session, watch_id, limit=workers * 4, lease_s=_lease_s(runtime))
        if not claims:
            break

        def copy(claim: ObjectClaim) -> Copied:
            target = raw_key(watch.tenant_id, object_document_id(claim.object_id))
            return copy_object(
                runtime, owner, source_name=watch.source, bucket=watch.bucket, key=claim.key, target=target
            )

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="watch-copy") as pool:
            copies = list(pool.map(copy, claims))
        for claim, copied in zip(claims, copies, strict=True):
            made += _settle_watched(runtime, watch, claim, spec, copied)
    if made:
        log.info("watch.ingested", watch_id=str(watch_id), documents=made)
    return made


def _settle_watched(
    runtime: WorkerRuntime,
    watch: Watch,
    claim: ObjectClaim,
    spec: DocumentSpec | IntakeRefused,
    copied: Copied,
) -> int:
    refusal = spec if isinstance(spec, IntakeRefused) else copied.refusal
    with runtime.unit_of_work() as uow:
        if refusal is not None or copied.stored is None:
            if refusal is not None:
                reject_object(uow.session, claim, refusal.reason, refusal.message)
            else:
                release_after_failure(
                    uow.session,
                    claim,
                    max_attempts=runtime.settings.intake.source_attempts,
                    message=copied.transient or "the source is unavailable",
                )
            uow.commit()
            return 0
        assert isinstance(spec, DocumentSpec)
        stored = copied.stored
        document_id = object_document_id(claim.object_id)
        if not still_held(uow.session, claim) or uow.session.get(Document, document_id) is not None:
            return 0
        document = new_document(
            document_id=document_id,
            tenant_id=watch.tenant_id,
            stored=stored,
            spec=spec,
            filename=claim.key.rsplit("/", 1)[-1],
        )
        accept_document(
            uow,
            document,
            dedup=Dedup.from_settings(runtime.settings, enabled=spec.dedup),
            before_commit=lambda inner, created: mark_ingested(inner, claim, created.id, stored.size),
        )
        uow.commit()
    return 1
