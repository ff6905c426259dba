"""Per-tenant content-hash dedup: the same bytes, read the same way by the same model, are read once.

A document's fingerprint hashes the SHA-256 of its bytes with everything else that decides its
result: the model family that reads it, the task, the page selection (canonical, so ``1-3``
equals ``3,1,2``), the resolved routing policy and the rendering settings (dpi, gundam tiling
bounds). When an upload matches an earlier *root* document of the same tenant and model (one
that is not itself a duplicate):

- completed, every page read by the revision of its model GPU workers serve now: the upload is
  completed at once as its duplicate (``duplicate_of``). No preparation, no GPU work, zero
  tokens: nothing was spent again, so nothing is charged again; its result endpoints serve the
  original's pages.
- still in progress: the upload waits in ``received`` without being prepared, and is settled
  when the original ends. Completed: the waiting documents complete as duplicates. Anything
  else (failed, partial, cancelled): the oldest waiting document becomes the new root and is
  prepared, and the others wait on it. Cancelling an original never cancels its duplicates.

Uploads with a PDF password are not fingerprinted (the password is part of what decides the
result, and is not kept). ``dedup=false`` skips the lookup; such a document can still serve
later uploads. The revision is what GPU workers announce for their family
(:func:`announce_revision`); results of an older revision of a family are not reused once a newer
one of that family has been announced, and a family's announcements never retire another's
results. Results are never reused across models: the model is in the fingerprint (version 2;
fingerprints of version 1, written before documents chose their model, match no new upload).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, aliased

from scriptorium.db.models import Document, EngineRevision, Page
from scriptorium.model_families import ModelFamily
from scriptorium.page_ranges import parse_page_selection
from scriptorium.states import TERMINAL_DOCUMENT_STATES, DocumentState, PageState

FINGERPRINT_VERSION = 2
IN_PROGRESS_STATES = (
    DocumentState.RECEIVED,
    DocumentState.PAUSED,
    DocumentState.PREPARING,
    DocumentState.PROCESSING,
)
TERMINAL_VALUES = tuple(state.value for state in TERMINAL_DOCUMENT_STATES)


def canonical_pages(selection: str | None) -> str:
    """The selection as sorted, merged ranges (``""`` for all pages); raises InputRejected if invalid."""
    if selection is None or not selection.strip():
        return ""
    ranges = sorted(
        (part.first, part.last if part.last is not None else float("inf"))
        for part in parse_page_selection(selection)
    )
    merged: list[list[float]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return ",".join(_render_range(int(first), last) for first, last in merged)


def _render_range(first: int, last: float) -> str:
    if last == float("inf"):
        return f"{first}-"
    return str(first) if first == last else f"{first}-{int(last)}"


def fingerprint(
    *,
    sha256: str,
    model: str,
    task: str,
    page_selection: str | None,
    routing_policy: dict[str, Any],
    dpi: int,
    min_crops: int,
    max_crops: int,
) -> str:
    """What makes two uploads interchangeable, as a hex digest."""
    identity = {
        "v": FINGERPRINT_VERSION,
        "sha256": sha256,
        "model": model,
        "task": task,
        "pages": canonical_pages(page_selection),
        "policy": routing_policy,
        "dpi": dpi,
        "crops": [min_crops, max_crops],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def announce_revision(session: Session, revision: str, model: ModelFamily | str) -> None:
    """A GPU worker says which revision of which model family it serves (when its engine starts)."""
    seen = func.clock_timestamp()  # not now(): announcements within one transaction keep their order
    family = ModelFamily(model).value
    statement = insert(EngineRevision).values(
        revision=revision, model=family, first_seen_at=seen, last_seen_at=seen
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[EngineRevision.revision], set_={"last_seen_at": seen, "model": family}
        )
    )


def served_revision(session: Session, model: ModelFamily | str) -> str | None:
    """The revision of ``model`` most recently announced, or None before any GPU worker of it started."""
    value: str | None = session.execute(
        select(EngineRevision.revision)
        .where(EngineRevision.model == ModelFamily(model).value)
        .order_by(EngineRevision.last_seen_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    return value


def find_original(
    session: Session, tenant_id: uuid.UUID, document_fingerprint: str, *, model: ModelFamily | str
) -> Document | None:
    """The earlier root document of the same model an upload may reuse: a completed one first (read
    by the latest served revision of that model), else one in progress."""
    revision = served_revision(session, model)
    reusable: ColumnElement[bool] = Document.state.in_(IN_PROGRESS_STATES)
    if revision is not None:
        read_by_another_revision = exists().where(
            Page.document_id == Document.id,
            Page.state == PageState.DONE,
            Page.model_revision.is_distinct_from(revision),
        )
        reusable = or_(reusable, and_(Document.state == DocumentState.COMPLETED, ~read_by_another_revision))
    completed_first = (Document.state == DocumentState.COMPLETED).desc()
    return session.execute(
        select(Document)
        .where(
            Document.tenant_id == tenant_id,
            Document.dedup_fingerprint == document_fingerprint,
            Document.model == ModelFamily(model).value,
            Document.duplicate_of.is_(None),
            reusable,
        )
        .order_by(completed_first, Document.created_at)
        .limit(1)
    ).scalar_one_or_none()


def finished_originals(session: Session) -> list[Document]:
    """Originals that have ended while documents still wait for them."""
    waiting = aliased(Document)
    awaited = select(waiting.duplicate_of).where(
        waiting.duplicate_of.is_not(None), waiting.state == DocumentState.RECEIVED
    )  # read from ix_documents_waiting_duplicates: only documents that wait
    return list(
        session.execute(
            select(Document)
            .where(Document.id.in_(awaited), Document.state.in_(TERMINAL_VALUES))
            .order_by(Document.finished_at)
        ).scalars()
    )


def waiting_duplicates(session: Session, original_id: uuid.UUID) -> list[Document]:
    """The documents waiting for ``original_id``, oldest first, locked (others' locked ones skipped)."""
    return list(
        session.execute(
            select(Document)
            .where(Document.duplicate_of == original_id, Document.state == DocumentState.RECEIVED)
            .order_by(Document.created_at, Document.id)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def promote(session: Session, waiting: list[Document]) -> Document:
    """The original did not complete: its oldest waiting duplicate becomes the root the rest wait on."""
    root, *others = waiting
    root.duplicate_of = None
    root.prepare_dispatched_at = func.now()
    root.updated_at = func.now()
    if others:
        session.execute(
            update(Document)
            .where(Document.id.in_([document.id for document in others]))
            .values(duplicate_of=root.id, updated_at=func.now())
        )
    session.flush()
    return root
