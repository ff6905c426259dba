"""model family per document, tenant default, and the GPU workers serving each family

Each document is read by one model family (``deepseek-ocr`` or ``unlimited-ocr``), chosen at
upload (or from its batch, watch or tenant default); documents created before this revision were
all read by DeepSeek-OCR. Engine revisions are announced per family, and every GPU worker keeps a
row saying which family it serves and when it was last alive, so the fleet can tell a document
that waits for a worker of its model from one that is merely queued.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAMILIES = "('deepseek-ocr', 'unlimited-ocr')"


def upgrade() -> None:
    op.add_column(
        "documents", sa.Column("model", sa.String(32), nullable=False, server_default="deepseek-ocr")
    )
    op.create_check_constraint(op.f("ck_documents_model"), "documents", f"model IN {FAMILIES}")
    op.add_column("tenants", sa.Column("default_model", sa.String(32), nullable=True))
    op.create_check_constraint(op.f("ck_tenants_default_model"), "tenants", f"default_model IN {FAMILIES}")
    op.add_column(
        "engine_revisions",
        sa.Column("model", sa.String(32), nullable=False, server_default="deepseek-ocr"),
    )
    op.create_check_constraint(op.f("ck_engine_revisions_model"), "engine_revisions", f"model IN {FAMILIES}")
    op.create_table(
        "gpu_workers",
        sa.Column("identity", sa.String(255), primary_key=True),
        sa.Column("model", sa.String(32), nullable=False),
        sa.Column("model_revision", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(f"model IN {FAMILIES}", name=op.f("ck_gpu_workers_model")),
    )
    op.create_index("ix_gpu_workers_model_seen", "gpu_workers", ["model", "last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_gpu_workers_model_seen", table_name="gpu_workers")
    op.drop_table("gpu_workers")
    op.drop_constraint(op.f("ck_engine_revisions_model"), "engine_revisions", type_="check")
    op.drop_column("engine_revisions", "model")
    op.drop_constraint(op.f("ck_tenants_default_model"), "tenants", type_="check")
    op.drop_column("tenants", "default_model")
    op.drop_constraint(op.f("ck_documents_model"), "documents", type_="check")
    op.drop_column("documents", "model")
