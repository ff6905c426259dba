"""Reading rows back in tests."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page


def pages_of(sessions: sessionmaker[Session], document_id: str | uuid.UUID) -> list[Page]:
    """The document's page rows, in page order."""
    with sessions() as session:
        return list(
            session.execute(
                select(Page).where(Page.document_id == uuid.UUID(str(document_id))).order_by(Page.page_no)
            ).scalars()
        )
