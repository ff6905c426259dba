"""Per-tenant quotas: page and token budgets, concurrent documents, and the running usage totals.

Budgets are totals over the tenant's life (None: unlimited); operators raise them with
``scriptorium tenant quota``. A page counts once, when the engine's result for it is recorded;
tokens are the vision plus output tokens of every engine run. Both are charged in the
transaction that writes the usage ledger, so ``tenant_usage`` always equals the tenant's ledger.

How they bite:

- Dispatch (``scriptorium.scheduling``) gives a tenant no more pages than its page budget leaves
  (pages read plus pages in flight) and none once its token budget is spent. A processing
  document of an exhausted tenant that still has queued pages moves to ``paused``, its error
  naming the budget; it moves back to ``processing`` once the budget allows again. A batch in
  flight may overshoot the token budget by what its pages cost; the page budget is exact.
- A document whose tenant already has ``max_concurrent_documents`` documents preparing or
  processing waits in ``paused`` before preparation and is resumed, interactive and oldest
  first, when one of them ends. It resumes as ``preparing`` under an already expired
  preparation lease: admitted, so it holds its slot, and claimable by the prepare message
  sent with it (or by the sweeper's re-send).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from scriptorium import sql
from scriptorium.db.models import Document, Tenant, TenantUsage
from scriptorium.sql import params
from scriptorium.states import DocumentState, Lane

_TENANT_LOCK_SPACE = 727275  # pg_advisory_xact_lock(space, hashtext(tenant)): one admission at a time


class PauseReason(StrEnum):
    PAGE_BUDGET = "page_budget_exhausted"
    TOKEN_BUDGET = "token_budget_exhausted"  # noqa: S105 - a reason code, not a secret
    CONCURRENCY = "concurrency_limit"

    @property
    def message(self) -> str:
        return _PAUSE_MESSAGES[self]


_PAUSE_MESSAGES = {
    PauseReason.PAGE_BUDGET: "the tenant's page budget is used up; the document resumes when it is raised",
    PauseReason.TOKEN_BUDGET: "the tenant's token budget is used up; the document resumes when it is raised",
    PauseReason.CONCURRENCY: "the tenant has its maximum of documents in progress; this one starts when one "
    "of them ends",
}


sql.register("reason", PauseReason)


@dataclass(frozen=True)
class TenantQuota:
    """A tenant's limits (None: unlimited) and what it has used."""

    page_budget: int | None
    token_budget: int | None
    max_concurrent_documents: int | None
    rate_limit_per_s: float | None
    rate_limit_burst: int | None
    pages_used: int
    tokens_used: int


@dataclass(frozen=True)
class Resumed:
    """A paused document that may start again; ``prepare`` when it still needs preparation."""

    document_id: uuid.UUID
    request_id: str | None
    lane: Lane
    prepare: bool


LIMIT_FIELDS = (
    "page_budget",
    "token_budget",
    "max_concurrent_documents",
    "rate_limit_per_s",
    "rate_limit_burst",
)

# Both statements start from the same "exhausted" CTE: tenants whose pages or tokens reached a budget.
_PAUSE_EXHAUSTED = text(
    """
    WITH exhausted AS (
        SELECT t.id AS tenant_id,
               CASE WHEN t.page_budget IS NOT NULL AND coalesce(u.pages, 0) >= t.page_budget
                    THEN :reason_page_budget_exhausted ELSE :reason_token_budget_exhausted END AS reason
        FROM tenants t LEFT JOIN tenant_usage u ON u.tenant_id = t.id
        WHERE (t.page_budget IS NOT NULL AND coalesce(u.pages, 0) >= t.page_budget)
           OR (t.token_budget IS NOT NULL AND coalesce(u.tokens, 0) >= t.token_budget)
    )
    UPDATE documents d
    SET state = :document_paused, error_code = e.reason,
        error_message = CASE WHEN e.reason = :reason_page_budget_exhausted THEN :page_message
                             ELSE :token_message END,
        updated_at = now()
    FROM exhausted e
    WHERE d.tenant_id = e.tenant_id AND d.state = :document_processing
      AND EXISTS (SELECT 1 FROM pages p WHERE p.document_id = d.id AND p.state = :page_queued)
    RETURNING d.id
    """
)

_BUDGET_READY = text(
    """
    WITH exhausted AS (
        SELECT t.id AS tenant_id,
               CASE WHEN t.page_budget IS NOT NULL AND coalesce(u.pages, 0) >= t.page_budget
                    THEN :reason_page_budget_exhausted ELSE :reason_token_budget_exhausted END AS reason
        FROM tenants t LEFT JOIN tenant_usage u ON u.tenant_id = t.id
        WHERE (t.page_budget IS NOT NULL AND coalesce(u.pages, 0) >= t.page_budget)
           OR (t.token_budget IS NOT NULL AND coalesce(u.tokens, 0) >= t.token_budget)
    )
    SELECT d.id FROM documents d
    WHERE d.state = :document_paused
      AND d.error_code IN (:reason_page_budget_exhausted, :reason_token_budget_exhausted)
      AND d.tenant_id NOT IN (SELECT tenant_id FROM exhausted)
    """
)

_REQUEUE_PAGES = text(
    "UPDATE pages SET dispatched_at = NULL WHERE document_id = ANY(:ids) AND state = :page_queued"
)

_RESUME_PROCESSING = text(
    """
    UPDATE documents
    SET state = :document_processing, error_code = NULL, error_message = NULL, updated_at = now()
    WHERE id = ANY(:ids) AND state = :document_paused
    RETURNING id, request_id, priority
    """
)

# Resumed into "preparing" (not "received") so the next pass counts them against the limit.
_CONCURRENCY_READY = text(
    """
    WITH waiting AS (
        SELECT d.id, d.tenant_id,
               row_number() OVER (
                   PARTITION BY d.tenant_id ORDER BY d.priority <> :lane_interactive, d.created_at, d.id
               ) AS place
        FROM documents d
        WHERE d.state = :document_paused AND d.error_code = :reason_concurrency_limit
    ),
    slots AS (
        SELECT t.id AS tenant_id,
               t.max_concurrent_documents - (
                   SELECT count(*) FROM documents a
                   WHERE a.tenant_id = t.id AND a.state IN (:document_preparing, :document_processing)
               ) AS free
        FROM tenants t WHERE t.id IN (SELECT tenant_id FROM waiting)
    )
    UPDATE documents d
    SET state = :document_preparing, prepare_lease_expires_at = now(), error_code = NULL,
        error_message = NULL, prepare_dispatched_at = now(), updated_at = now()
    FROM waiting w JOIN slots s ON s.tenant_id = w.tenant_id
    WHERE d.id = w.id AND d.state = :document_paused AND (s.free IS NULL OR w.place <= s.free)
    RETURNING d.id, d.request_id, d.priority
    """
)

_WAITING_AHEAD = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM documents
        WHERE tenant_id = :tenant AND state = :document_paused AND error_code = :reason_concurrency_limit
          AND (CASE WHEN priority = :lane_interactive THEN 0 ELSE 1 END, created_at) < (:rank, :created)
    )
    """
)

_PAUSE_FOR_CONCURRENCY = text(
    """
    UPDATE documents SET state = :document_paused, error_code = :reason_concurrency_limit,
        error_message = :message, updated_at = now()
    WHERE id = :id AND state = :document_received
    """
)


def charge_usage(session: Session, tenant_id: uuid.UUID, *, pages: int, tokens: int) -> None:
    """Add what the engine read to the tenant's totals (same transaction as the ledger rows)."""
    statement = insert(TenantUsage).values(tenant_id=tenant_id, pages=pages, tokens=tokens)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[TenantUsage.tenant_id],
            set_={
                "pages": TenantUsage.pages + statement.excluded.pages,
                "tokens": TenantUsage.tokens + statement.excluded.tokens,
                "updated_at": func.now(),
            },
        )
    )


def quota_of(session: Session, tenant_id: uuid.UUID) -> TenantQuota:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise LookupError(f"no tenant {tenant_id}")
    usage = session.get(TenantUsage, tenant_id)
    return TenantQuota(
        page_budget=tenant.page_budget,
        token_budget=tenant.token_budget,
        max_concurrent_documents=tenant.max_concurrent_documents,
        rate_limit_per_s=tenant.rate_limit_per_s,
        rate_limit_burst=tenant.rate_limit_burst,
        pages_used=usage.pages if usage else 0,
        tokens_used=usage.tokens if usage else 0,
    )


def set_limits(session: Session, tenant: Tenant, **limits: int | float | None) -> None:
    """Change some of a tenant's limits; a limit passed as None becomes unlimited (or the default)."""
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
    for name, value in limits.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative")
        setattr(tenant, name, value)
    session.flush()


def pause_exhausted(session: Session) -> int:
    """Pause processing documents with queued pages whose tenant has spent a budget."""
    rows = session.execute(
        _PAUSE_EXHAUSTED,
        params(
            _PAUSE_EXHAUSTED,
            page_message=PauseReason.PAGE_BUDGET.message,
            token_message=PauseReason.TOKEN_BUDGET.message,
        ),
    ).all()
    return len(rows)


def resume_ready(session: Session) -> list[Resumed]:
    """Resume paused documents whose budget allows again and those a concurrency slot now admits."""
    resumed: list[Resumed] = []
    ready = [row.id for row in session.execute(_BUDGET_READY, params(_BUDGET_READY))]
    if ready:  # page rows first: the lock order of this module
        session.execute(_REQUEUE_PAGES, params(_REQUEUE_PAGES, ids=ready))
        resumed.extend(
            Resumed(row.id, row.request_id, Lane(row.priority), prepare=False)
            for row in session.execute(_RESUME_PROCESSING, params(_RESUME_PROCESSING, ids=ready))
        )
    resumed.extend(
        Resumed(row.id, row.request_id, Lane(row.priority), prepare=True)
        for row in session.execute(_CONCURRENCY_READY, params(_CONCURRENCY_READY))
    )
    return resumed


def hold_for_concurrency(session: Session, document_id: uuid.UUID) -> bool:
    """Before preparing a received document: pause it when its tenant has no free slot.

    Holds a per-tenant advisory lock to the end of the transaction, so the caller's claim and
    the count it relied on stay consistent with other preparations of the same tenant. A
    document also waits while an older (or interactive, ahead of bulk) one waits for a slot.
    """
    row = session.execute(
        select(
            Document.tenant_id,
            Document.state,
            Document.priority,
            Document.created_at,
            Document.duplicate_of,
            Tenant.max_concurrent_documents,
        )
        .join(Tenant, Tenant.id == Document.tenant_id)
        .where(Document.id == document_id)
    ).one_or_none()
    claimable = row is not None and row.state == DocumentState.RECEIVED and row.duplicate_of is None
    if row is None or not claimable or row.max_concurrent_documents is None:
        return False
    session.execute(select(func.pg_advisory_xact_lock(_TENANT_LOCK_SPACE, func.hashtext(str(row.tenant_id)))))
    active = session.execute(
        select(func.count())
        .select_from(Document)
        .where(
            Document.tenant_id == row.tenant_id,
            Document.state.in_((DocumentState.PREPARING, DocumentState.PROCESSING)),
        )
    ).scalar_one()
    lane_rank = Lane(row.priority).rank
    ahead = session.execute(
        _WAITING_AHEAD, params(_WAITING_AHEAD, tenant=row.tenant_id, rank=lane_rank, created=row.created_at)
    ).scalar_one()
    if active < row.max_concurrent_documents and not ahead:
        return False
    session.execute(
        _PAUSE_FOR_CONCURRENCY,
        params(_PAUSE_FOR_CONCURRENCY, id=document_id, message=PauseReason.CONCURRENCY.message),
    )
    return True
