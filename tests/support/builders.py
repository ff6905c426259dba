"""Rows for tests, built through the same code paths the product uses where one exists."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from scriptorium.db.models import Document, Page, Tenant
from scriptorium.states import DocumentState, PageState
from scriptorium.tenants import IssuedKey, create_tenant


def tenant(session: Session, name: str | None = None) -> IssuedKey:
    return create_tenant(session, name or f"tenant-{uuid.uuid4().hex[:8]}")


def document_with_pages(
    session: Session,
    owner: Tenant,
    *,
    pages: int,
    mode: str = "base",
    state: DocumentState = DocumentState.PROCESSING,
    max_attempts: int = 3,
    dispatched: bool = True,
    **extra: Any,
) -> Document:
    document = Document(
        tenant_id=owner.id,
        state=state.value,
        size_bytes=1,
        sha256="0" * 64,
        raw_key="unused",
        task="markdown",
        routing_policy={"mode": "auto"},
        client_metadata={},
        pages_total=pages,
        **extra,
    )
    session.add(document)
    session.flush()
    for page_no in range(1, pages + 1):
        session.add(
            Page(
                document_id=document.id,
                page_no=page_no,
                state=PageState.QUEUED.value,
                max_attempts=max_attempts,
                image_key=f"img/{page_no}",
                width=1224,
                height=1584,
                routing={"mode": mode},
                planned_mode=mode,
                ocr_attempts=[],
                dispatched_at=None,
            )
        )
    session.flush()
    if dispatched:
        session.execute(
            Page.__table__.update().where(Page.document_id == document.id).values(dispatched_at=func.now())
        )
    return document
