"""fair-share index per model family

Dispatch now picks pages per model family (each family has its own GPU queue and workers), and
its walk over the tenants with processing documents filters on the family. The index it skips
through gains the family right after the lane, so that walk stays one probe per tenant however
many documents of the other family a tenant has.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_documents_fair_share", table_name="documents")
    op.create_index(
        "ix_documents_fair_share",
        "documents",
        ["priority", "model", "tenant_id", "created_at", "id"],
        postgresql_where=sa.text("state = 'processing'"),
    )


def downgrade() -> None:
    op.drop_index("ix_documents_fair_share", table_name="documents")
    op.create_index(
        "ix_documents_fair_share",
        "documents",
        ["priority", "tenant_id", "created_at", "id"],
        postgresql_where=sa.text("state = 'processing'"),
    )
