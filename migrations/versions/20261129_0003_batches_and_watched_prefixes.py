"""batches and watched prefixes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOCUMENT_EVENTS = "'document.completed', 'document.partial', 'document.failed', 'document.cancelled'"
BATCH_EVENTS = "'batch.completed', 'batch.failed', 'batch.cancelled'"
TERMINAL_DOCUMENTS = "'cancelled', 'completed', 'failed', 'partial'"


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("source", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("options", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("webhook_url", sa.String(length=2048), nullable=True),
        sa.Column("inputs_total", sa.Integer(), nullable=False),
        sa.Column("inputs_complete", sa.Boolean(), nullable=False),
        sa.Column("intake_marker", sa.Text(), nullable=True),
        sa.Column("intake_attempts", sa.Integer(), nullable=False),
        sa.Column("intake_lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("intake_dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        *_timestamps(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('open', 'expanding', 'running', 'cancelling', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_batches_state"),
        ),
        sa.CheckConstraint("kind IN ('uploads', 'archive', 'prefix', 'manifest')", name=op.f("ck_batches_kind")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_batches_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_batches_tenant_idempotency"),
    )
    op.create_index("ix_batches_tenant_created", "batches", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_batches_expanding",
        "batches",
        ["intake_dispatched_at"],
        postgresql_where=sa.text("state = 'expanding'"),
    )

    op.add_column("documents", sa.Column("batch_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_documents_batch_id_batches"), "documents", "batches", ["batch_id"], ["id"]
    )
    op.create_index(op.f("ix_documents_batch_id"), "documents", ["batch_id"])
    op.create_index(
        "ix_documents_batch_unfinished",
        "documents",
        ["batch_id"],
        postgresql_where=sa.text(f"NOT (state IN ({TERMINAL_DOCUMENTS}))"),
    )

    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("origin", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("options", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("document_id", sa.UUID(), nullable=True),
        sa.Column("history", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("fetch_attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "state IN ('pending', 'ingested', 'rejected', 'skipped', 'cancelled')",
            name=op.f("ck_batch_items_state"),
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_batch_items_batch_id_batches")),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name=op.f("fk_batch_items_document_id_documents")
        ),
        sa.PrimaryKeyConstraint("batch_id", "seq", name=op.f("pk_batch_items")),
    )
    op.create_index(op.f("ix_batch_items_document_id"), "batch_items", ["document_id"])
    op.create_index(
        "ix_batch_items_pending", "batch_items", ["batch_id", "seq"], postgresql_where=sa.text("state = 'pending'")
    )

    op.create_table(
        "watches",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("prefix", sa.String(length=1024), nullable=False),
        sa.Column("options", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("poll_marker", sa.Text(), nullable=True),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_watches_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watches")),
    )
    op.create_index("ix_watches_tenant_created", "watches", ["tenant_id", "created_at", "id"])

    op.create_table(
        "watch_objects",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("watch_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("etag", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetch_attempts", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.UUID(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "state IN ('pending', 'ingesting', 'ingested', 'rejected')", name=op.f("ck_watch_objects_state")
        ),
        sa.ForeignKeyConstraint(["watch_id"], ["watches.id"], name=op.f("fk_watch_objects_watch_id_watches")),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name=op.f("fk_watch_objects_document_id_documents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_objects")),
        sa.UniqueConstraint("watch_id", "key", "etag", name="uq_watch_objects_watch_key_etag"),
    )
    op.create_index(
        "ix_watch_objects_due",
        "watch_objects",
        ["watch_id", "claimed_until"],
        postgresql_where=sa.text("state IN ('pending', 'ingesting')"),
    )

    # Events and deliveries are about a document or, now, a batch.
    op.alter_column("events", "document_id", existing_type=sa.UUID(), nullable=True)
    op.add_column("events", sa.Column("batch_id", sa.UUID(), nullable=True))
    op.add_column("events", sa.Column("batch_round", sa.Integer(), nullable=True))
    op.create_foreign_key(op.f("fk_events_batch_id_batches"), "events", "batches", ["batch_id"], ["id"])
    op.drop_constraint(op.f("ck_events_type"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_type"), "events", f"type IN ({DOCUMENT_EVENTS}, {BATCH_EVENTS})")
    op.create_check_constraint(
        op.f("ck_events_subject"), "events", "(document_id IS NULL) <> (batch_id IS NULL)"
    )
    op.create_index(
        "uq_events_batch_round_type",
        "events",
        ["batch_id", "batch_round", "type"],
        unique=True,
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    op.alter_column("webhook_deliveries", "document_id", existing_type=sa.UUID(), nullable=True)
    op.add_column("webhook_deliveries", sa.Column("batch_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_webhook_deliveries_batch_id_batches"), "webhook_deliveries", "batches", ["batch_id"], ["id"]
    )
    op.create_index(op.f("ix_webhook_deliveries_batch_id"), "webhook_deliveries", ["batch_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_batch_id"), table_name="webhook_deliveries")
    op.drop_constraint(op.f("fk_webhook_deliveries_batch_id_batches"), "webhook_deliveries", type_="foreignkey")
    op.execute("DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE batch_id IS NOT NULL)")
    op.execute("DELETE FROM webhook_deliveries WHERE batch_id IS NOT NULL")
    op.drop_column("webhook_deliveries", "batch_id")
    op.alter_column("webhook_deliveries", "document_id", existing_type=sa.UUID(), nullable=False)
    op.drop_index("uq_events_batch_round_type", table_name="events")
    op.drop_constraint(op.f("ck_events_subject"), "events", type_="check")
    op.execute("DELETE FROM events WHERE batch_id IS NOT NULL")
    op.drop_constraint(op.f("ck_events_type"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_type"), "events", f"type IN ({DOCUMENT_EVENTS})")
    op.drop_constraint(op.f("fk_events_batch_id_batches"), "events", type_="foreignkey")
    op.drop_column("events", "batch_round")
    op.drop_column("events", "batch_id")
    op.alter_column("events", "document_id", existing_type=sa.UUID(), nullable=False)

    op.drop_index("ix_watch_objects_due", table_name="watch_objects")
    op.drop_table("watch_objects")
    op.drop_index("ix_watches_tenant_created", table_name="watches")
    op.drop_table("watches")
    op.drop_index("ix_batch_items_pending", table_name="batch_items")
    op.drop_index(op.f("ix_batch_items_document_id"), table_name="batch_items")
    op.drop_table("batch_items")
    op.drop_index("ix_documents_batch_unfinished", table_name="documents")
    op.drop_index(op.f("ix_documents_batch_id"), table_name="documents")
    op.drop_constraint(op.f("fk_documents_batch_id_batches"), "documents", type_="foreignkey")
    op.drop_column("documents", "batch_id")
    op.drop_index("ix_batches_expanding", table_name="batches")
    op.drop_index("ix_batches_tenant_created", table_name="batches")
    op.drop_table("batches")
