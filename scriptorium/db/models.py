"""The relational schema: tenants, API keys, documents, pages, events and the usage ledger.

Page results (markdown, blocks) live here; page images, figure crops and assembled document
files live in object storage and are referenced by key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from scriptorium.batches.states import BatchKind, BatchState, ItemState, WatchObjectState
from scriptorium.model_families import DEFAULT_MODEL_FAMILY, ModelFamily
from scriptorium.states import (
    ACTIVE_PAGE_STATES,
    TERMINAL_DOCUMENT_STATES,
    DocumentState,
    EventType,
    Lane,
    PageState,
)
from scriptorium.webhooks.states import DUE_STATES, DeliveryState

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: Any) -> str:
    """A CHECK constraint or partial-index predicate over enum values: ``state IN ('a', 'b')``."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _enum(enum: type[StrEnum], length: int = 16) -> Enum:
    """A state column: stored as its string value (the CHECK constraint lists them), read as the enum."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=_values,
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint(_in("default_model", ModelFamily), name="default_model"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    routing_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # default policy for uploads
    # Quotas (None: unlimited / the settings' default). See scriptorium/quotas.py.
    page_budget: Mapped[int | None] = mapped_column(BigInteger)  # pages the engine may read in total
    token_budget: Mapped[int | None] = mapped_column(BigInteger)  # vision + output tokens in total
    max_concurrent_documents: Mapped[int | None] = mapped_column(Integer)  # preparing or processing at once
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float)  # API requests refilled per second
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)  # API requests allowed back to back
    default_model: Mapped[str | None] = mapped_column(String(32))  # None: the fleet's default family
    created_at: Mapped[datetime] = _now()

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant")


class ApiKey(Base):
    """An API key; only its SHA-256 is stored, the prefix finds the row."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # set by rotation
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    tenant: Mapped[Tenant] = relationship(back_populates="api_keys")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint(_in("state", DocumentState), name="state"),
        CheckConstraint(_in("model", ModelFamily), name="model"),
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_documents_tenant_idempotency"),
        Index("ix_documents_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_documents_state_updated", "state", "updated_at"),
        # Finds a batch's unfinished documents at once when one of them turns terminal.
        Index(
            "ix_documents_batch_unfinished",
            "batch_id",
            postgresql_where=text(f"NOT ({_in('state', sorted(TERMINAL_DOCUMENT_STATES))})"),
        ),
        CheckConstraint(_in("priority", Lane), name="priority"),
        Index(
            "ix_documents_dedup",
            "tenant_id",
            "dedup_fingerprint",
            postgresql_where=text("dedup_fingerprint IS NOT NULL AND duplicate_of IS NULL"),
        ),
        Index(
            "ix_documents_waiting_duplicates",
            "duplicate_of",
            postgresql_where=text(f"duplicate_of IS NOT NULL AND {_in('state', [DocumentState.RECEIVED])}"),
        ),
        Index(
            "ix_documents_fair_share",
            "priority",
            "model",
            "tenant_id",
            "created_at",
            "id",
            postgresql_where=text(_in("state", [DocumentState.PROCESSING])),
        ),
        Index(
            "ix_documents_active",
            "tenant_id",
            postgresql_where=text(_in("state", [DocumentState.PREPARING, DocumentState.PROCESSING])),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    state: Mapped[DocumentState] = mapped_column(_enum(DocumentState), default=DocumentState.RECEIVED)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    filename: Mapped[str | None] = mapped_column(String(1024))
    kind: Mapped[str | None] = mapped_column(String(16))  # sniffed type
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    raw_key: Mapped[str] = mapped_column(String(1024))
    page_selection: Mapped[str | None] = mapped_column(String(1024))  # "1-3,5" as requested
    task: Mapped[str] = mapped_column(String(16))
    # The model family that reads every page of it (see scriptorium.model_families).
    model: Mapped[str] = mapped_column(
        String(32), default=DEFAULT_MODEL_FAMILY, server_default=DEFAULT_MODEL_FAMILY
    )
    routing_policy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    client_metadata: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    pdf_password: Mapped[str | None] = mapped_column(Text)  # wiped once the document is prepared
    request_id: Mapped[str | None] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))  # signed with the tenant's secret
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"), index=True)
    priority: Mapped[Lane] = mapped_column(
        _enum(Lane), default=Lane.INTERACTIVE, server_default=Lane.INTERACTIVE
    )
    # Same bytes + options (see scriptorium/dedup.py); None when the document may not be reused.
    dedup_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The original whose result this document serves (completed) or waits for (received).
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("documents.id"))

    page_count: Mapped[int | None] = mapped_column(Integer)  # pages in the file
    pages_total: Mapped[int] = mapped_column(Integer, default=0)  # pages selected for OCR
    prepare_attempts: Mapped[int] = mapped_column(Integer, default=0)
    prepare_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    prepare_dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    vision_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    valid_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    placeholder_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    ocr_attempts: Mapped[int] = mapped_column(Integer, default=0)
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    engine_seconds: Mapped[float] = mapped_column(Float, default=0.0)

    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    result_markdown_key: Mapped[str | None] = mapped_column(String(1024))
    result_json_key: Mapped[str | None] = mapped_column(String(1024))

    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    pages: Mapped[list[Page]] = relationship(back_populates="document", order_by="Page.page_no")


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (
        CheckConstraint(_in("state", PageState), name="state"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint(_in("model", ModelFamily), name="model"),
        Index(
            "ix_pages_work",
            "state",
            "dispatched_at",
            postgresql_where=text(_in("state", ACTIVE_PAGE_STATES)),
        ),
        Index(
            "ix_pages_batchable",
            "planned_mode",
            "dispatched_at",
            postgresql_where=text(_in("state", [PageState.QUEUED])),
        ),
        Index(
            "ix_pages_lease",
            "lease_expires_at",
            postgresql_where=text(_in("state", [PageState.RUNNING])),
        ),
    )

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    page_no: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based page of the file
    state: Mapped[PageState] = mapped_column(_enum(PageState), default=PageState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    image_key: Mapped[str] = mapped_column(String(1024))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    dpi: Mapped[int | None] = mapped_column(Integer)
    routing: Mapped[dict[str, Any]] = mapped_column(JSONB)  # facts, prediction, reason, source
    planned_mode: Mapped[str | None] = mapped_column(String(16))  # routed mode; None for skipped pages
    mode: Mapped[str | None] = mapped_column(String(16))  # the mode of the kept result
    grid: Mapped[list[Any] | None] = mapped_column(JSONB)

    vision_tokens: Mapped[int] = mapped_column(Integer, default=0)
    valid_tokens: Mapped[int] = mapped_column(Integer, default=0)
    placeholder_tokens: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    engine_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    compression_ratio: Mapped[float | None] = mapped_column(Float)
    finished: Mapped[bool | None] = mapped_column(Boolean)
    under_read: Mapped[bool] = mapped_column(Boolean, default=False)
    ocr_attempts: Mapped[list[Any]] = mapped_column(JSONB, default=list)  # every engine run, kept or not
    model_revision: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(32))  # the family that read it

    markdown: Mapped[str | None] = mapped_column(Text)
    blocks: Mapped[list[Any] | None] = mapped_column(JSONB)
    figures: Mapped[list[Any] | None] = mapped_column(JSONB)  # [{name, key, box}]

    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    document: Mapped[Document] = relationship(back_populates="pages")

    @property
    def drawn(self) -> bool:
        """Whether the page was rendered: one that could not be drawn has no image and no size."""
        return self.width > 0


class Event(Base):
    """A state transition clients are told about; written in the transaction that causes it."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in("type", EventType), name="type"),
        # One terminal event per document, whatever duplicate tasks try.
        UniqueConstraint("document_id", "type", name="uq_events_document_type"),
        # A batch's events are about the batch instead, one per type and round (retry-failed starts one).
        CheckConstraint("(document_id IS NULL) <> (batch_id IS NULL)", name="subject"),
        Index(
            "uq_events_batch_round_type",
            "batch_id",
            "batch_round",
            "type",
            unique=True,
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    document_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("documents.id"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"))
    batch_round: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class UsageEntry(Base):
    """Append-only: one row per engine run of a page (escalations are separate rows)."""

    __tablename__ = "usage_ledger"
    __table_args__ = (
        Index("ix_usage_ledger_tenant_created", "tenant_id", "created_at"),
        CheckConstraint(_in("model", ModelFamily), name="model"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID)
    document_id: Mapped[uuid.UUID] = mapped_column(UUID, index=True)
    page_no: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))
    vision_tokens: Mapped[int] = mapped_column(Integer)
    valid_tokens: Mapped[int] = mapped_column(Integer)
    placeholder_tokens: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    engine_seconds: Mapped[float] = mapped_column(Float)
    escalation: Mapped[bool] = mapped_column(Boolean)
    model_revision: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(32))  # the family that read it
    created_at: Mapped[datetime] = _now()


class WebhookEndpoint(Base):
    """A tenant's receiver. Secrets are kept usable (they sign every delivery) and never logged."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[Any]] = mapped_column(JSONB)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str | None] = mapped_column(Text)  # None once the endpoint is deleted
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookTenantSecret(Base):
    """The tenant's secret that signs deliveries to per-document ``webhook_url`` receivers."""

    __tablename__ = "webhook_tenant_secrets"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WebhookDelivery(Base):
    """One event for one receiver; written in the transaction that writes the event."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("state", DeliveryState), name="state"),
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index(
            "uq_webhook_deliveries_event_document_url",
            "event_id",
            unique=True,
            postgresql_where=text("endpoint_id IS NULL"),
        ),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text(_in("state", DUE_STATES)),
        ),
        Index("ix_webhook_deliveries_tenant_created", "tenant_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    document_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("documents.id"), index=True)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"), index=True)
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    url: Mapped[str | None] = mapped_column(String(2048))  # the document's (batch's) webhook_url
    event_type: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))  # webhook-id: the same on every attempt and replay
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # every attempt ever started
    failures: Mapped[int] = mapped_column(Integer, default=0)  # since the last success or replay
    next_attempt_at: Mapped[datetime] = _now()
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WebhookAttempt(Base):
    """Append-only log of every POST a sender made (or refused to make) for a delivery."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt_no: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    address: Mapped[str | None] = mapped_column(String(64))  # the checked IP that was connected to
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latency_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class TenantUsage(Base):
    """Running totals of what the engine read for a tenant; equals the sum over its ledger rows."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    pages: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # vision + output
    updated_at: Mapped[datetime] = _now()


class EngineRevision(Base):
    """A model revision GPU workers announced serving; dedup reuses results of the latest one of
    each family only."""

    __tablename__ = "engine_revisions"
    __table_args__ = (CheckConstraint(_in("model", ModelFamily), name="model"),)

    revision: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(
        String(32), default=DEFAULT_MODEL_FAMILY, server_default=DEFAULT_MODEL_FAMILY
    )
    first_seen_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()


class GpuWorker(Base):
    """A GPU worker process: the family it serves, and when it last said it was alive."""

    __tablename__ = "gpu_workers"
    __table_args__ = (
        CheckConstraint(_in("model", ModelFamily), name="model"),
        Index("ix_gpu_workers_model_seen", "model", "last_seen_at"),
    )

    identity: Mapped[str] = mapped_column(String(255), primary_key=True)
    model: Mapped[str] = mapped_column(String(32))
    model_revision: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()


class Batch(Base):
    """Many inputs ingested and tracked as one unit. ``source`` says where inputs come from and names
    a configured source for buckets; credentials never live in a row."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(_in("state", BatchState), name="state"),
        CheckConstraint(_in("kind", BatchKind), name="kind"),
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_batches_tenant_idempotency"),
        Index("ix_batches_tenant_created", "tenant_id", "created_at", "id"),
        Index(
            "ix_batches_expanding",
            "intake_dispatched_at",
            postgresql_where=text(_in("state", [BatchState.EXPANDING])),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[BatchState] = mapped_column(_enum(BatchState))
    round: Mapped[int] = mapped_column(Integer, default=1)  # retry-failed starts the next round
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[dict[str, Any]] = mapped_column(JSONB)  # e.g. {source, bucket, prefix} or {key}
    options: Mapped[dict[str, Any]] = mapped_column(JSONB)  # defaults of every document it creates
    webhook_url: Mapped[str | None] = mapped_column(String(2048))  # batch events, tenant-signed

    inputs_total: Mapped[int] = mapped_column(Integer, default=0)  # inputs discovered (the last seq)
    inputs_complete: Mapped[bool] = mapped_column(Boolean, default=False)  # discovery finished
    intake_marker: Mapped[str | None] = mapped_column(Text)  # last listed key / manifest line read
    intake_attempts: Mapped[int] = mapped_column(Integer, default=0)  # intake runs that did not finish
    intake_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    intake_dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BatchItem(Base):
    """One input of a batch, in input order; accounted for in the reconciliation report."""

    __tablename__ = "batch_items"
    __table_args__ = (
        CheckConstraint(_in("state", ItemState), name="state"),
        Index(
            "ix_batch_items_pending",
            "batch_id",
            "seq",
            postgresql_where=text(_in("state", [ItemState.PENDING])),
        ),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based order of discovery
    name: Mapped[str] = mapped_column(Text)  # the archive path, object key or manifest URI
    origin: Mapped[dict[str, Any]] = mapped_column(JSONB)  # where its bytes are: staged key or source object
    options: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # per-input overrides (manifest)
    state: Mapped[ItemState] = mapped_column(_enum(ItemState), default=ItemState.PENDING)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    document_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("documents.id"), index=True)
    history: Mapped[list[Any]] = mapped_column(JSONB, default=list)  # earlier documents, oldest first
    fetch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Watch(Base):
    """A watched bucket prefix: new objects become documents (notifications, or polling after a marker)."""

    __tablename__ = "watches"
    __table_args__ = (Index("ix_watches_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(64))  # a configured source's name
    bucket: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(1024))
    options: Mapped[dict[str, Any]] = mapped_column(JSONB)
    token_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the notification token
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    poll_marker: Mapped[str | None] = mapped_column(Text)  # polling lists keys after this one
    polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WatchObject(Base):
    """An object a watch saw; the unique (watch, key, etag) makes it one document however it was seen."""

    __tablename__ = "watch_objects"
    __table_args__ = (
        CheckConstraint(_in("state", WatchObjectState), name="state"),
        UniqueConstraint("watch_id", "key", "etag", name="uq_watch_objects_watch_key_etag"),
        Index(
            "ix_watch_objects_due",
            "watch_id",
            "lease_expires_at",
            postgresql_where=text(_in("state", [WatchObjectState.PENDING, WatchObjectState.INGESTING])),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    watch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("watches.id"))
    key: Mapped[str] = mapped_column(String(1024))
    etag: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[WatchObjectState] = mapped_column(_enum(WatchObjectState), default=WatchObjectState.PENDING)
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # seen by a notification
    listed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # seen by polling
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fetch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    document_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("documents.id"))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
