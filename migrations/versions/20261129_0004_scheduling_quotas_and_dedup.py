"""scheduling quotas and dedup

Lanes (documents.priority), content-hash dedup (documents.dedup_fingerprint, duplicate_of),
the paused document state, per-tenant quotas and running usage totals, and the registry of
model revisions GPU workers serve.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES_BEFORE = "('received', 'preparing', 'processing', 'completed', 'partial', 'failed', 'cancelled')"
STATES_AFTER = "('received', 'paused', 'preparing', 'processing', 'completed', 'partial', 'failed', 'cancelled')"


def upgrade() -> None:
    op.add_column("tenants", sa.Column("page_budget", sa.BigInteger(), nullable=True))
    op.add_column("tenants", sa.Column("token_budget", sa.BigInteger(), nullable=True))
    op.add_column("tenants", sa.Column("max_concurrent_documents", sa.Integer(), nullable=True))
    op.add_column("tenants", sa.Column("rate_limit_per_s", sa.Float(), nullable=True))
    op.add_column("tenants", sa.Column("rate_limit_burst", sa.Integer(), nullable=True))

    op.add_column(
        "documents",
        sa.Column("priority", sa.String(length=16), server_default="interactive", nullable=False),
    )
    op.add_column("documents", sa.Column("dedup_fingerprint", sa.String(length=64), nullable=True))
    op.add_column("documents", sa.Column("duplicate_of", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_documents_duplicate_of_documents"), "documents", "documents", ["duplicate_of"], ["id"]
    )
    op.create_check_constraint(op.f("ck_documents_priority"), "documents", "priority IN ('interactive', 'bulk')")
    op.drop_constraint(op.f("ck_documents_state"), "documents", type_="check")
    op.create_check_constraint(op.f("ck_documents_state"), "documents", f"state IN {STATES_AFTER}")
    op.create_index(
        "ix_documents_dedup",
        "documents",
        ["tenant_id", "dedup_fingerprint"],
        postgresql_where=sa.text("dedup_fingerprint IS NOT NULL AND duplicate_of IS NULL"),
    )
    op.create_index(
        "ix_documents_waiting_duplicates",
        "documents",
        ["duplicate_of"],
        postgresql_where=sa.text("duplicate_of IS NOT NULL AND state = 'received'"),
    )
    op.create_index(
        "ix_documents_fair_share",
        "documents",
        ["priority", "tenant_id", "created_at", "id"],
        postgresql_where=sa.text("state = 'processing'"),
    )
    op.create_index(
        "ix_documents_active",
        "documents",
        ["tenant_id"],
        postgresql_where=sa.text("state IN ('preparing', 'processing')"),
    )

    op.create_table(
        "tenant_usage",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("pages", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_usage_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_usage")),
    )
    # The totals start equal to the ledger they summarise.
    op.execute(
        """
        INSERT INTO tenant_usage (tenant_id, pages, tokens)
        SELECT tenant_id, count(DISTINCT (document_id, page_no)), sum(vision_tokens + output_tokens)
        FROM usage_ledger GROUP BY tenant_id
        """
    )

    op.create_table(
        "engine_revisions",
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_engine_revisions")),
    )


def downgrade() -> None:
    op.drop_table("engine_revisions")
    op.drop_table("tenant_usage")
    op.drop_index("ix_documents_active", table_name="documents")
    op.drop_index("ix_documents_fair_share", table_name="documents")
    op.drop_index("ix_documents_waiting_duplicates", table_name="documents")
    op.drop_index("ix_documents_dedup", table_name="documents")
    # Paused documents go back to where they waited from: prepared ones keep processing.
    op.execute(
        "UPDATE documents SET state = CASE WHEN page_count IS NULL THEN 'received' ELSE 'processing' END, "
        "error_code = NULL, error_message = NULL WHERE state = 'paused'"
    )
    op.drop_constraint(op.f("ck_documents_state"), "documents", type_="check")
    op.create_check_constraint(op.f("ck_documents_state"), "documents", f"state IN {STATES_BEFORE}")
    op.drop_constraint(op.f("ck_documents_priority"), "documents", type_="check")
    op.drop_constraint(op.f("fk_documents_duplicate_of_documents"), "documents", type_="foreignkey")
    op.drop_column("documents", "duplicate_of")
    op.drop_column("documents", "dedup_fingerprint")
    op.drop_column("documents", "priority")
    op.drop_column("tenants", "rate_limit_burst")
    op.drop_column("tenants", "rate_limit_per_s")
    op.drop_column("tenants", "max_concurrent_documents")
    op.drop_column("tenants", "token_budget")
    op.drop_column("tenants", "page_budget")
