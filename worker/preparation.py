"""The prepare step: raw upload → page images in storage, routed page rows in Postgres.

Runs on the CPU queue. Untrusted files are parsed and rasterised in a resource-limited child
process (this worker process's warm render child, :mod:`worker.prepare.sandbox`); page facts
are measured and each page routed to a mode; the page rows, the routed modes and the document's
move to ``processing`` commit together, and page messages are sent after that commit (lost ones
are re-sent by the sweeper).
"""

from __future__ import annotations

import tempfile
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from scriptorium import metrics
from scriptorium.db.models import Document, Page
from scriptorium.dispatch import admit_and_dispatch
from scriptorium.errors import DependencyUnavailable, InputRejected
from scriptorium.lifecycle.claims import (
    claim_document_for_prepare,
    extend_prepare_lease,
    release_document_claim,
)
from scriptorium.lifecycle.documents import fail_document, finish_document_if_done, lock_document
from scriptorium.logging import get_logger
from scriptorium.policy import RoutingPolicy
from scriptorium.quotas import hold_for_concurrency
from scriptorium.states import DocumentState, PageState
from scriptorium.storage import page_image_key
from worker.lease_keeper import keeping_lease
from worker.prepare.document import FailedPage
from worker.prepare.sandbox import RenderedPageFile
from worker.routing.decide import route_page
from worker.runtime import WorkerRuntime

log = get_logger(__name__)
PREPARE_ATTEMPTS = 3


@dataclass(frozen=True)
class PreparedDocument:
    kind: str
    page_count: int
    pages: list[dict[str, Any]]  # page rows ready to insert


def prepare_document(runtime: WorkerRuntime, document_id: uuid.UUID) -> None:
    settings = runtime.settings
    with runtime.units.committing() as uow:
        if hold_for_concurrency(uow.session, document_id):
            log.info("prepare.paused", why="the tenant has its maximum of documents in progress")
            return
        document = claim_document_for_prepare(
            uow.session,
            document_id,
            lease_s=settings.prepare.render_timeout_s + settings.limits.lease_s,
            max_attempts=PREPARE_ATTEMPTS,
        )
        if document is None:
            log.info("prepare.skipped", why="not claimable (duplicate, cancelled or finished)")
            return
        uow.session.expunge(document)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="scriptorium-prepare-") as scratch,
            _preparation_lease(runtime, document_id),
        ):
            prepared = _render_and_route(runtime, document, Path(scratch))
    except InputRejected as rejected:
        with runtime.units.committing() as uow:
            fail_document(uow, document_id, rejected.reason, rejected.message)
        log.info("prepare.rejected", reason=rejected.reason.value, detail=rejected.message)
        metrics.count_prepared("rejected", reason=rejected.reason.value)
        return
    except DependencyUnavailable:
        with runtime.units.committing() as uow:  # not the document's fault: its attempt is refunded
            release_document_claim(uow.session, document_id)
        raise
    _commit(runtime, document_id, prepared)


def _preparation_lease(runtime: WorkerRuntime, document_id: uuid.UUID) -> AbstractContextManager[None]:
    """Keep the claim while a long document renders and its pages are routed and stored (a claim
    that ran out would let another worker prepare it again, and cost it an attempt)."""
    lease_s = runtime.settings.prepare.render_timeout_s + runtime.settings.limits.lease_s

    def extend(session: Session) -> None:
        if not extend_prepare_lease(session, document_id, lease_s=lease_s):
            log.warning("prepare.lease_lost", why="the document left the preparing state")

    return keeping_lease(runtime, extend, name="prepare")


def _render_and_route(runtime: WorkerRuntime, document: Document, scratch: Path) -> PreparedDocument:
    source = scratch / "source"
    with source.open("wb") as target:
        runtime.store.download_to(document.raw_key, target)
    result = runtime.render_sandbox().render(
        source,
        scratch / "pages",
        page_selection=document.page_selection,
        password=document.pdf_password,
    )
    policy = RoutingPolicy.model_validate(document.routing_policy)
    rows = [_route_and_store(runtime, document, rendered, policy) for rendered in result.pages]
    rows += [_failed_row(runtime, document, failed) for failed in result.failed]
    rows.sort(key=lambda row: int(row["page_no"]))
    log.info(
        "prepare.rendered",
        kind=result.info.kind.value,
        page_count=result.info.page_count,
        selected=len(rows),
        failed=[(failed.page_no, failed.reason.value) for failed in result.failed],
    )
    return PreparedDocument(kind=result.info.kind.value, page_count=result.info.page_count, pages=rows)


def _failed_row(runtime: WorkerRuntime, document: Document, failed: FailedPage) -> dict[str, Any]:
    """A page that could not be drawn: failed at once with its reason, never sent to a GPU. It has
    no image (its ``image_key`` names none) and no size."""
    return {
        "document_id": document.id,
        "page_no": failed.page_no,
        "state": PageState.FAILED,
        "attempts": 0,
        "max_attempts": runtime.settings.limits.page_attempts,
        "image_key": page_image_key(document.tenant_id, document.id, failed.page_no),
        "width": 0,
        "height": 0,
        "dpi": None,
        "routing": {"reason": f"not rendered: {failed.reason.value}", "source": "render"},
        "planned_mode": None,
        "error_code": failed.reason.value,
        "error_message": failed.message,
        "finished_at": func.now(),
        "ocr_attempts": [],
    }


def _route_and_store(
    runtime: WorkerRuntime, document: Document, rendered: RenderedPageFile, policy: RoutingPolicy
) -> dict[str, Any]:
    engine = runtime.settings.engine
    with Image.open(rendered.path) as image:
        image.load()
        decision = route_page(
            image.convert("RGB"),
            rendered.text_layer,
            policy,
            counter=runtime.token_counter(),
            min_crops=engine.min_crops,
            max_crops=engine.max_crops,
        )
    key = page_image_key(document.tenant_id, document.id, rendered.page_no)
    runtime.store.put_bytes(key, rendered.path.read_bytes(), content_type="image/png")
    skipped = decision.mode is None
    return {
        "document_id": document.id,
        "page_no": rendered.page_no,
        "state": PageState.SKIPPED if skipped else PageState.QUEUED,
        "attempts": 0,
        "max_attempts": runtime.settings.limits.page_attempts,
        "image_key": key,
        "width": rendered.width,
        "height": rendered.height,
        "dpi": rendered.dpi,
        "routing": decision.as_dict(),
        "planned_mode": None if decision.mode is None else decision.mode.value,
        "finished_at": func.now() if skipped else None,
        "ocr_attempts": [],
        "error_code": None,  # every row of one multi-row insert names the same columns
        "error_message": None,
    }


def _commit(runtime: WorkerRuntime, document_id: uuid.UUID, prepared: PreparedDocument) -> None:
    with runtime.units.committing() as uow:
        document = lock_document(uow.session, document_id)
        if document is None or document.state != DocumentState.PREPARING:
            log.info("prepare.discarded", why="document left the preparing state (cancelled or taken over)")
            return
        if prepared.pages:
            uow.session.execute(insert(Page).values(prepared.pages).on_conflict_do_nothing())
        document.kind = prepared.kind
        document.page_count = prepared.page_count
        document.pages_total = len(prepared.pages)
        document.pdf_password = None
        document.prepare_lease_expires_at = None
        document.state = DocumentState.PROCESSING
        document.updated_at = func.now()
        uow.session.flush()
        finish_document_if_done(uow, document)  # every page blank: nothing for the GPU
        admit_and_dispatch(
            uow,
            depth=runtime.settings.limits.dispatch_depth,
            lost_after_s=runtime.settings.limits.lost_message_after_s,
            batch_pages=runtime.settings.engine.max_batch_pages,
        )
        messages = len(uow.outbox.messages)
    log.info("prepare.done", pages=len(prepared.pages), messages=messages)
    metrics.count_prepared(
        "prepared",
        page_modes=[page["planned_mode"] for page in prepared.pages if page["state"] != PageState.FAILED],
    )
