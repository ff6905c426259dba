"""Which model families have a live GPU worker, and which wait for one.

Every GPU worker process keeps a ``gpu_workers`` row: it writes it when its engine is ready,
touches it every ``limits.gpu_heartbeat_s`` while alive and deletes it on a clean shutdown. A row
not touched for ``limits.gpu_worker_gone_after_s`` belongs to a worker that died or lost the
database, and no longer counts. A family with queued pages (or one the fleet is meant to serve)
and no live worker *waits*: its documents stay in ``processing`` and say so in their response,
the backlog gauge ``scriptorium_pages_waiting_for_model`` counts their pages, and the sweeper logs
when a family starts and stops waiting. Nothing fails: once a worker of the family starts, its
pages flow.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from scriptorium.db.models import Document, GpuWorker, Page
from scriptorium.model_families import ModelFamily
from scriptorium.states import DocumentState, PageState

NO_WORKER_FOR_MODEL = "no_worker_for_model"


@dataclass(frozen=True)
class Waiting:
    """Why a processing document's pages are not being read: no live worker serves its model."""

    model: str
    reason: str = NO_WORKER_FOR_MODEL


def record_heartbeat(session: Session, *, identity: str, model: str, model_revision: str) -> None:
    """Say that the worker ``identity`` is alive and serves ``model`` (first call: it started)."""
    values = {"model": ModelFamily(model).value, "model_revision": model_revision, "last_seen_at": func.now()}
    session.execute(
        insert(GpuWorker)
        .values(identity=identity, **values)
        .on_conflict_do_update(index_elements=[GpuWorker.identity], set_=values)
    )


def retire(session: Session, identity: str) -> None:
    """A worker that shuts down cleanly takes its row with it."""
    session.execute(delete(GpuWorker).where(GpuWorker.identity == identity))


def live_models(session: Session, *, gone_after_s: float) -> set[str]:
    """The families at least one worker heard from within ``gone_after_s`` serves."""
    alive = GpuWorker.last_seen_at >= func.now() - timedelta(seconds=gone_after_s)
    return set(session.execute(select(GpuWorker.model).where(alive).distinct()).scalars())


def last_heard_from(session: Session) -> dict[str, datetime]:
    """When a worker of each family last said it was alive (families never served are absent)."""
    latest = select(GpuWorker.model, func.max(GpuWorker.last_seen_at)).group_by(GpuWorker.model)
    return {str(model): seen for model, seen in session.execute(latest)}


def queued_pages_by_model(session: Session, models: Collection[str] | None = None) -> dict[str, int]:
    """Queued pages of processing documents, per family that reads them (of ``models`` only, when
    given)."""
    statement = (
        select(Document.model, func.count())
        .select_from(Page)
        .join(Document, Document.id == Page.document_id)
        .where(Page.state == PageState.QUEUED, Document.state == DocumentState.PROCESSING)
        .group_by(Document.model)
    )
    if models is not None:
        statement = statement.where(Document.model.in_(list(models)))
    return {str(model): int(count) for model, count in session.execute(statement).all()}


def pages_waiting_for_model(
    session: Session, *, gone_after_s: float, served: Iterable[str] = ()
) -> dict[str, int]:
    """Every family the fleet serves, a worker serves or a document waits for, with its queued
    pages when no live worker serves it and 0 when one does (or nothing of it is queued): the
    gauge's values. Only pages of families without a live worker are counted."""
    live = live_models(session, gone_after_s=gone_after_s)
    unserved = [family.value for family in ModelFamily if family.value not in live]
    queued = queued_pages_by_model(session, unserved) if unserved else {}
    families = {ModelFamily(model).value for model in served} | set(queued) | live
    return {model: queued.get(model, 0) for model in sorted(families)}


def models_without_worker(session: Session, *, gone_after_s: float, served: Iterable[str] = ()) -> list[str]:
    """The families served (``served``) or asked for by a document with queued pages that no live
    worker serves, in name order."""
    live = live_models(session, gone_after_s=gone_after_s)
    waiting = pages_waiting_for_model(session, gone_after_s=gone_after_s, served=served)
    wanted = {ModelFamily(model).value for model in served} | {m for m, count in waiting.items() if count}
    return sorted(wanted - live)


def waiting_documents(
    session: Session, document_ids: Collection[uuid.UUID], *, gone_after_s: float
) -> dict[uuid.UUID, Waiting]:
    """Of ``document_ids``, the processing documents with queued pages whose family has no live
    worker, and why they wait."""
    if not document_ids:
        return {}
    has_queued = (
        select(Page.document_id)
        .where(Page.document_id == Document.id, Page.state == PageState.QUEUED)
        .exists()
    )
    rows = session.execute(
        select(Document.id, Document.model).where(
            Document.id.in_(list(document_ids)), Document.state == DocumentState.PROCESSING, has_queued
        )
    ).all()
    if not rows:
        return {}
    live = live_models(session, gone_after_s=gone_after_s)
    return {row.id: Waiting(model=row.model) for row in rows if row.model not in live}
