"""Lanes and per-tenant fair share: which queued pages go to the broker next, decided in SQL.

Every model family is scheduled on its own: its pages travel in its own GPU queue to its own
workers (``scriptorium.queueing.gpu_queue``), so lanes, depth and tenant turns hold per family,
and a backlog of one family never takes the broker slots of the other. Within a family, each lane
keeps at most ``depth`` live page messages, so a bulk backlog never stands between an
interactive page and a GPU: interactive pages are dispatched first and travel at a higher broker
priority. Within a lane tenants take turns: a tenant's due pages are numbered 1, 2, 3 … after the
pages it already has in flight, and pages go out in that order, so a tenant with a million queued
pages gets one slot for each slot of a tenant with ten. Only documents in ``processing`` are
served; a tenant whose page budget is used up (pages read plus pages in flight) gets no more
pages, and one whose token budget is spent gets none.

Each tenant contributes at most ``capacity`` candidates, read through ``ix_documents_fair_share``
in document order, so a call costs the same with a backlog of a thousand pages or of a million.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from scriptorium.batching import next_batch
from scriptorium.gpu_workers import last_heard_from
from scriptorium.model_families import ModelFamily
from scriptorium.sql import LIVE_PAGE_MESSAGE, PAGE_MESSAGE_DUE, PREDICTED_TOKENS, params
from scriptorium.states import Lane

LANES = (Lane.INTERACTIVE, Lane.BULK)

_LIVE_MESSAGES = text(
    f"""
    SELECT d.model, d.priority AS lane, count(*) AS messages
    FROM pages p JOIN documents d ON d.id = p.document_id
    WHERE {LIVE_PAGE_MESSAGE}
    GROUP BY d.model, d.priority
    """  # noqa: S608 - composed from constant fragments (scriptorium.sql), values are bound
)

# "waiting" lists the lane's tenants with processing documents of the family by skipping through
# the index (one probe per tenant, not one row per document); each tenant then offers at most
# :capacity pages in document order, of which the first "allowed" (its page budget, counted over
# every family) take part. Turns count the tenant's pages in flight in this lane and family.
_DISPATCH_LANE = text(
    f"""
    WITH RECURSIVE waiting(tenant_id) AS (
        (SELECT d.tenant_id FROM documents d
         WHERE d.state = :document_processing AND d.priority = :lane AND d.model = :model
         ORDER BY d.tenant_id LIMIT 1)
        UNION ALL
        SELECT (SELECT d.tenant_id FROM documents d
                WHERE d.state = :document_processing AND d.priority = :lane AND d.model = :model
                  AND d.tenant_id > w.tenant_id
                ORDER BY d.tenant_id LIMIT 1)
        FROM waiting w WHERE w.tenant_id IS NOT NULL
    ),
    flight AS (
        SELECT d.tenant_id,
               count(*) AS pages,
               count(*) FILTER (WHERE d.priority = :lane AND d.model = :model) AS lane_pages
        FROM pages p JOIN documents d ON d.id = p.document_id
        WHERE p.state = :page_running OR {LIVE_PAGE_MESSAGE}
        GROUP BY d.tenant_id
    ),
    allowance AS (
        SELECT w.tenant_id,
               coalesce(f.lane_pages, 0) AS in_flight,
               CASE WHEN t.page_budget IS NULL THEN :capacity
                    ELSE greatest(0, t.page_budget - coalesce(u.pages, 0) - coalesce(f.pages, 0))
               END AS allowed
        FROM waiting w
        JOIN tenants t ON t.id = w.tenant_id
        LEFT JOIN tenant_usage u ON u.tenant_id = w.tenant_id
        LEFT JOIN flight f ON f.tenant_id = w.tenant_id
        WHERE t.token_budget IS NULL OR coalesce(u.tokens, 0) < t.token_budget
    ),
    candidates AS (
        SELECT c.document_id, c.page_no, c.created_at, a.in_flight, a.allowed,
               row_number() OVER (
                   PARTITION BY a.tenant_id ORDER BY c.created_at, c.document_id, c.page_no
               ) AS place
        FROM allowance a
        CROSS JOIN LATERAL (
            SELECT p.document_id, p.page_no, d.created_at
            FROM documents d JOIN pages p ON p.document_id = d.id
            WHERE d.priority = :lane AND d.model = :model AND d.tenant_id = a.tenant_id
              AND d.state = :document_processing AND p.state = :page_queued AND {PAGE_MESSAGE_DUE}
            ORDER BY d.created_at, d.id, p.page_no
            LIMIT :capacity
        ) c
        WHERE a.allowed > 0
    ),
    chosen AS (
        SELECT p.document_id, p.page_no, c.in_flight + c.place AS turn
        FROM candidates c JOIN pages p ON p.document_id = c.document_id AND p.page_no = c.page_no
        WHERE c.place <= c.allowed AND p.state = :page_queued
        ORDER BY c.in_flight + c.place, c.created_at, c.document_id, c.page_no
        LIMIT :capacity
        FOR UPDATE OF p SKIP LOCKED
    )
    UPDATE pages p SET dispatched_at = now()
    FROM chosen
    WHERE p.document_id = chosen.document_id AND p.page_no = chosen.page_no
    RETURNING p.document_id, p.page_no, p.planned_mode AS mode, p.attempts, chosen.turn,
              {PREDICTED_TOKENS} AS predicted_tokens
    """  # noqa: S608 - composed from constant fragments (scriptorium.sql), values are bound
)

# The next engine batch a GPU worker takes by itself (prefetching while its engine reads): pages
# of the family it serves, already dispatched (their messages are in the broker and will find
# nothing), never tried (a page retried after a crash runs alone, so a poison page kills no
# batch-mate), of the mode of the page at the head of the claim order. Pages running count as
# turns taken, as in-flight pages do for dispatch (per family, as there). The batch itself is
# chosen among these candidates by scriptorium.batching.
_CLAIM_ORDER = f"""
    WITH running AS (
        SELECT d.tenant_id, d.priority, count(*) AS pages
        FROM pages p JOIN documents d ON d.id = p.document_id
        WHERE p.state = :page_running AND d.model = :model
        GROUP BY d.tenant_id, d.priority
    ),
    ranked AS (
        SELECT p.document_id, p.page_no, p.dispatched_at, p.planned_mode, d.priority AS lane,
               {PREDICTED_TOKENS} AS predicted_tokens,
               CASE WHEN d.priority = :lane_interactive THEN 0 ELSE 1 END AS lane_rank,
               coalesce(r.pages, 0) + row_number() OVER (
                   PARTITION BY d.priority, d.tenant_id ORDER BY p.dispatched_at, p.document_id, p.page_no
               ) AS turn
        FROM pages p
        JOIN documents d ON d.id = p.document_id
        LEFT JOIN running r ON r.tenant_id = d.tenant_id AND r.priority = d.priority
        WHERE p.state = :page_queued AND p.dispatched_at IS NOT NULL AND p.attempts = 0
          AND d.state = :document_processing AND d.model = :model {{mode_filter}}
    )
    SELECT r.document_id, r.page_no, r.planned_mode AS mode, r.lane, r.turn, r.predicted_tokens, 0 AS attempts
    FROM pages p JOIN ranked r ON r.document_id = p.document_id AND r.page_no = p.page_no
    WHERE p.state = :page_queued
    ORDER BY r.lane_rank, r.turn, r.dispatched_at, p.document_id, p.page_no
    LIMIT :limit
"""  # noqa: S608 - composed from constant fragments (scriptorium.sql), values are bound
_HEAD_OF_LINE = text(_CLAIM_ORDER.format(mode_filter=""))
_CANDIDATES = text(
    _CLAIM_ORDER.format(mode_filter="AND p.planned_mode = :mode") + "FOR UPDATE OF p SKIP LOCKED"
)


@dataclass(frozen=True)
class DuePage:
    """A page chosen to go to an engine, with what batching needs to know of it."""

    document_id: uuid.UUID
    page_no: int
    lane: Lane
    model: str
    mode: str
    attempts: int
    predicted_tokens: int
    turn: int  # its place in its tenant's order within the lane

    @classmethod
    def of(cls, row: Any, model: str, lane: Lane | None = None) -> DuePage:
        return cls(
            row.document_id,
            row.page_no,
            lane or Lane(row.lane),
            model,
            row.mode,
            row.attempts,
            int(row.predicted_tokens),
            int(row.turn),
        )


def live_messages(session: Session, *, lost_after_s: int) -> dict[tuple[ModelFamily, Lane], int]:
    """Page messages presumed in the broker, per family and lane (queued pages dispatched recently)."""
    rows = session.execute(_LIVE_MESSAGES, params(_LIVE_MESSAGES, lost_after_s=lost_after_s)).all()
    counts = {(model, lane): 0 for model in ModelFamily for lane in LANES}
    counts.update({(ModelFamily(row.model), Lane(row.lane)): int(row.messages) for row in rows})
    return counts


def dispatch_due_pages(session: Session, *, depth: int, lost_after_s: int) -> list[DuePage]:
    """Mark the pages to send now as dispatched: per family, interactive lane first, tenants in turn.

    A message counts as lost when its page was not claimed within ``lost_after_s`` although a
    worker of its family was heard from after it was sent: while a family waits for a worker
    (``scriptorium.gpu_workers``) its queue holds at most one message per page, not a new copy
    every ``lost_after_s``.
    """
    live = live_messages(session, lost_after_s=lost_after_s)
    heard = last_heard_from(session)
    due: list[DuePage] = []
    for model in ModelFamily:
        for lane in LANES:
            capacity = depth - live[(model, lane)]
            if capacity <= 0:
                continue
            rows = session.execute(
                _DISPATCH_LANE,
                params(
                    _DISPATCH_LANE,
                    lane=lane.value,
                    model=model.value,
                    capacity=capacity,
                    lost_after_s=lost_after_s,
                    family_seen_at=heard.get(model.value),
                ),
            ).all()
            pages = (DuePage.of(row, model.value, lane) for row in rows)
            due.extend(sorted(pages, key=lambda page: page.turn))
    return due


def lock_next_batch(session: Session, *, model: str, batch_size: int, window_batches: int) -> list[DuePage]:
    """Lock the next engine batch of dispatched, never-tried pages of ``model`` (see ``_CLAIM_ORDER``):
    the mode of the page at the head of the line, then up to ``batch_size`` pages of that mode chosen
    by length (:func:`scriptorium.batching.next_batch`) among the first ``window_batches`` batches'
    worth."""
    if batch_size <= 0:
        return []
    family = ModelFamily(model).value
    head = session.execute(_HEAD_OF_LINE, params(_HEAD_OF_LINE, model=family, limit=1)).first()
    if head is None:
        return []
    rows = session.execute(
        _CANDIDATES,
        params(_CANDIDATES, model=family, mode=head.mode, limit=batch_size * window_batches),
    ).all()
    candidates = [DuePage.of(row, family) for row in rows]
    return next_batch(candidates, batch_size, window_batches=window_batches)
