"""Claiming pages for an engine and documents for preparation, under leases in database time.

A GPU worker serves one model family and claims only pages of documents of that family: a
message that reached it by mistake (a misconfigured queue, a message from before the queues were
split per family) leaves the other family's pages queued for their own workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from scriptorium.db.models import Document, Page
from scriptorium.leases import expired, lease_until
from scriptorium.model_families import DEFAULT_MODEL_FAMILY, ModelFamily
from scriptorium.scheduling import lock_next_batch
from scriptorium.states import DocumentState, PageState


@dataclass(frozen=True)
class PageClaim:
    document_id: uuid.UUID
    page_no: int
    lease_token: uuid.UUID
    attempt: int
    tenant_id: uuid.UUID
    image_key: str
    width: int
    height: int
    planned_mode: str
    task: str
    routing: dict[str, Any]
    routing_policy: dict[str, Any]
    request_id: str | None


def _claimable_page() -> Any:
    """Queued, or running under a lease its holder stopped extending, with attempts left."""
    return and_(
        Page.attempts < Page.max_attempts,
        or_(
            Page.state == PageState.QUEUED,
            and_(Page.state == PageState.RUNNING, expired(Page.lease_expires_at)),
        ),
    )


def _document_of_another_model(model: str) -> Any:
    """The page belongs to a document read by another model family than ``model``."""
    return (
        select(Document.id)
        .where(Document.id == Page.document_id, Document.model != ModelFamily(model).value)
        .exists()
    )


def _document_paused() -> Any:
    """A paused document's pages wait: messages already in the broker find nothing to claim."""
    return (
        select(Document.id)
        .where(Document.id == Page.document_id, Document.state == DocumentState.PAUSED)
        .exists()
    )


def _running_under_new_lease(owner: str, lease_s: int, token: Any) -> dict[str, Any]:
    return {
        "state": PageState.RUNNING,
        "attempts": Page.attempts + 1,
        "lease_token": token,
        "lease_owner": owner,
        "lease_expires_at": lease_until(lease_s),
        "updated_at": func.now(),
    }


def held_under(claim: PageClaim) -> tuple[Any, ...]:
    """The fence on every write to a claimed page: still running under this claim's lease."""
    return (
        Page.document_id == claim.document_id,
        Page.page_no == claim.page_no,
        Page.lease_token == claim.lease_token,
        Page.state == PageState.RUNNING,
    )


def _claims_returning(session: Session, statement: Any) -> list[PageClaim]:
    rows = session.execute(
        statement.returning(
            Page.document_id,
            Page.page_no,
            Page.lease_token,
            Page.attempts,
            Page.image_key,
            Page.width,
            Page.height,
            Page.planned_mode,
            Page.routing,
        )
    ).all()
    if not rows:
        return []
    documents = {
        doc.id: doc
        for doc in session.execute(
            select(Document).where(Document.id.in_({row.document_id for row in rows}))
        ).scalars()
    }
    return [
        PageClaim(
            document_id=row.document_id,
            page_no=row.page_no,
            lease_token=row.lease_token,
            attempt=row.attempts,
            tenant_id=documents[row.document_id].tenant_id,
            image_key=row.image_key,
            width=row.width,
            height=row.height,
            planned_mode=row.planned_mode,
            task=documents[row.document_id].task,
            routing=row.routing,
            routing_policy=documents[row.document_id].routing_policy,
            request_id=documents[row.document_id].request_id,
        )
        for row in rows
    ]


def claim_pages(
    session: Session, pages: Sequence[tuple[uuid.UUID, int]], *, model: str, owner: str, lease_s: int
) -> list[PageClaim]:
    """Take the listed pages of ``model``'s documents that are still claimable, under one lease for
    the batch; the others (duplicate, stale or exhausted messages, cancelled or paused documents,
    pages another model family reads) are left alone."""
    if not pages:
        return []
    statement = (
        update(Page)
        .where(
            tuple_(Page.document_id, Page.page_no).in_(list(pages)),
            _claimable_page(),
            ~_document_paused(),
            ~_document_of_another_model(model),
        )
        .values(**_running_under_new_lease(owner, lease_s, uuid.uuid4()))
    )
    order = {page: place for place, page in enumerate(pages)}
    claims = _claims_returning(session, statement)
    return sorted(claims, key=lambda claim: order[(claim.document_id, claim.page_no)])


def claim_page(
    session: Session,
    document_id: uuid.UUID,
    page_no: int,
    *,
    owner: str,
    lease_s: int,
    model: str = DEFAULT_MODEL_FAMILY,
) -> PageClaim | None:
    """Take one page under a fresh lease, or None for a duplicate, stale or exhausted message (or a
    page of another family than ``model``)."""
    claims = claim_pages(session, [(document_id, page_no)], model=model, owner=owner, lease_s=lease_s)
    return claims[0] if claims else None


def redispatch_foreign_pages(
    session: Session, pages: Sequence[tuple[uuid.UUID, int]], *, model: str
) -> dict[str, list[tuple[uuid.UUID, int]]]:
    """Of ``pages`` (a message a worker of ``model`` received), those another family reads: still
    queued ones are marked unsent, so the next dispatch sends them to their own family's queue.
    Returns them by the family that reads them."""
    if not pages:
        return {}
    listed = tuple_(Page.document_id, Page.page_no).in_(list(pages))
    session.execute(
        update(Page)
        .where(listed, _document_of_another_model(model), Page.state == PageState.QUEUED)
        .values(dispatched_at=None, updated_at=func.now())
    )
    rows = session.execute(
        select(Document.model, Page.document_id, Page.page_no)
        .join(Document, Document.id == Page.document_id)
        .where(listed, Document.model != ModelFamily(model).value)
    ).all()
    found: dict[str, list[tuple[uuid.UUID, int]]] = {}
    for row in rows:
        found.setdefault(row.model, []).append((row.document_id, row.page_no))
    return found


def claim_next_batch(
    session: Session, *, model: str, batch_size: int, window_batches: int, owner: str, lease_s: int
) -> list[PageClaim]:
    """Claim the next engine batch of ``model``'s pages straight from Postgres (see
    ``scheduling.lock_next_batch``): what a GPU worker prefetches while its engine reads the current
    batch."""
    locked = lock_next_batch(session, model=model, batch_size=batch_size, window_batches=window_batches)
    pages = [(page.document_id, page.page_no) for page in locked]
    return claim_pages(session, pages, model=model, owner=owner, lease_s=lease_s)


def extend_leases(
    session: Session, claims: Sequence[PageClaim], *, lease_s: int
) -> set[tuple[uuid.UUID, int]]:
    """Heartbeat: push lease expiry forward; returns the pages whose lease was lost."""
    lost: set[tuple[uuid.UUID, int]] = set()
    for claim in claims:
        result = session.execute(
            update(Page).where(*held_under(claim)).values(lease_expires_at=lease_until(lease_s))
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            lost.add((claim.document_id, claim.page_no))
    return lost


def release_claim(
    session: Session, claim: PageClaim, *, page_at_fault: bool = True, resend: bool = False
) -> bool:
    """Give a claimed page back to the queue.

    With ``page_at_fault=False`` (a dependency was down, the worker is shutting down) the claim's
    attempt is handed back, so outages never dead-letter a page, and the page counts as
    dispatched: the message that will retry it is the releasing task's own, sent with backoff.
    ``resend`` says no such message will come: the page is due for the dispatcher at once.
    """
    values: dict[str, Any] = {
        "state": PageState.QUEUED,
        "lease_token": None,
        "lease_expires_at": None,
        "dispatched_at": None,
        "updated_at": func.now(),
    }
    if not page_at_fault:
        values["attempts"] = func.greatest(Page.attempts - 1, 0)
        values["dispatched_at"] = None if resend else func.now()
    result = session.execute(update(Page).where(*held_under(claim)).values(**values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def claim_document_for_prepare(
    session: Session, document_id: uuid.UUID, *, lease_s: int, max_attempts: int
) -> Document | None:
    """Take a received document (or one whose preparation lease expired) for preparation."""
    row = session.execute(
        update(Document)
        .where(
            Document.id == document_id,
            Document.prepare_attempts < max_attempts,
            Document.duplicate_of.is_(None),
            or_(
                Document.state == DocumentState.RECEIVED,
                and_(
                    Document.state == DocumentState.PREPARING,
                    expired(Document.prepare_lease_expires_at),
                ),
            ),
        )
        .values(
            state=DocumentState.PREPARING,
            prepare_attempts=Document.prepare_attempts + 1,
            prepare_lease_expires_at=lease_until(lease_s),
            started_at=func.coalesce(Document.started_at, func.now()),
            updated_at=func.now(),
        )
        .returning(Document.id)
    ).first()
    if row is None:
        return None
    return session.get(Document, document_id, populate_existing=True)


def extend_prepare_lease(session: Session, document_id: uuid.UUID, *, lease_s: int) -> bool:
    """Heartbeat of a preparation: push its lease forward; False when it is no longer preparing."""
    result = session.execute(
        update(Document)
        .where(Document.id == document_id, Document.state == DocumentState.PREPARING)
        .values(prepare_lease_expires_at=lease_until(lease_s))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_document_claim(session: Session, document_id: uuid.UUID) -> bool:
    """Hand a document being prepared back (a dependency was down): ``received`` again, attempt refunded."""
    result = session.execute(
        update(Document)
        .where(Document.id == document_id, Document.state == DocumentState.PREPARING)
        .values(
            state=DocumentState.RECEIVED,
            prepare_attempts=func.greatest(Document.prepare_attempts - 1, 0),
            prepare_lease_expires_at=None,
            prepare_dispatched_at=func.now(),  # the releasing task retries it with backoff
            updated_at=func.now(),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
