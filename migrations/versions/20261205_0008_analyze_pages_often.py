"""analyze pages and documents after small changes

The dispatch and claim queries choose their plans from the planner's statistics; right after a
large intake (hundreds of new page rows) stale statistics made them take seconds instead of
milliseconds. Autovacuum analyses these two tables after 2% of their rows changed (at least 200)
instead of the default 10% (at least 50 + 10%).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("pages", "documents")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0.02, "
            "autovacuum_analyze_threshold = 200)"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)")
