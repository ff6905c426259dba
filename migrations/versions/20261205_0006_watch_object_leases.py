"""watch object leases named and fenced like every other lease

A watched object being ingested is held until ``lease_expires_at`` (was ``claimed_until``) and
writes under the claim are fenced on ``lease_token``, as for pages and webhook deliveries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("watch_objects", "claimed_until", new_column_name="lease_expires_at")
    op.add_column("watch_objects", sa.Column("lease_token", postgresql.UUID(), nullable=True))


def downgrade() -> None:
    op.drop_column("watch_objects", "lease_token")
    op.alter_column("watch_objects", "lease_expires_at", new_column_name="claimed_until")
