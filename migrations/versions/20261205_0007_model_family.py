"""model family of each page result and ledger row

Pages and usage ledger rows record which model family read them (``deepseek-ocr`` or
``unlimited-ocr``) next to the model revision. Everything read before this revision was read by
DeepSeek-OCR, the only family served until then.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAMILIES = "('deepseek-ocr', 'unlimited-ocr')"


def upgrade() -> None:
    op.add_column("pages", sa.Column("model", sa.String(32), nullable=True))
    op.execute("UPDATE pages SET model = 'deepseek-ocr' WHERE model_revision IS NOT NULL")
    op.create_check_constraint(op.f("ck_pages_model"), "pages", f"model IN {FAMILIES}")
    op.add_column(
        "usage_ledger", sa.Column("model", sa.String(32), nullable=False, server_default="deepseek-ocr")
    )
    op.alter_column("usage_ledger", "model", server_default=None)
    op.create_check_constraint(op.f("ck_usage_ledger_model"), "usage_ledger", f"model IN {FAMILIES}")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_usage_ledger_model"), "usage_ledger", type_="check")
    op.drop_column("usage_ledger", "model")
    op.drop_constraint(op.f("ck_pages_model"), "pages", type_="check")
    op.drop_column("pages", "model")
