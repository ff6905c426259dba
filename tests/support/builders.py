"""Rows for tests, built through the same code paths the product uses where one exists."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from scriptorium.api_keys import IssuedKey
from scriptorium.db.models import Document, Page, Tenant
from scriptorium.lifecycle.recording import AttemptRecord, PageOutcome
from scriptorium.modes import Mode, token_geometry
from scriptorium.states import DocumentState, PageState
from scriptorium.tenants import create_tenant


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
                state=PageState.QUEUED,
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


PAGE_SIZE = (1224, 1584)  # US Letter at 144 dpi, the size builders give pages
PROMPT_TEXT_TOKENS = 12


def attempt(
    *, mode: str = "base", output: int = 40, escalation: bool = False, engine_seconds: float = 0.25
) -> AttemptRecord:
    """One engine run with the real token geometry of a Letter page in ``mode``."""
    geometry = token_geometry(Mode(mode), *PAGE_SIZE)
    return AttemptRecord(
        mode=mode,
        vision_tokens=geometry.vision_features,
        valid_tokens=geometry.valid,
        placeholder_tokens=geometry.placeholders,
        prompt_tokens=geometry.placeholders + PROMPT_TEXT_TOKENS,
        output_tokens=output,
        engine_seconds=engine_seconds,
        finished=True,
        repetition=False,
        escalation=escalation,
    )


def page_outcome(
    *attempts: AttemptRecord,
    fail: bool = False,
    mode: str = "base",
    markdown: str = "text",
    revision: str = "rev",
    model: str = "deepseek-ocr",
) -> PageOutcome:
    """A read page (or, with ``fail``, one the engine could not read) as an OCR task records it."""
    runs = attempts or (attempt(mode=mode),)
    if fail:
        return PageOutcome(
            state=PageState.FAILED,
            attempts=runs,
            model_revision=revision,
            model=model,
            error_code="engine_error",
            error_message="the test engine could not read it",
        )
    return PageOutcome(
        state=PageState.DONE,
        attempts=runs,
        model_revision=revision,
        model=model,
        mode=runs[-1].mode,
        markdown=markdown,
        blocks=[],
        figures=[],
    )
