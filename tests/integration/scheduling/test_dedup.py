"""Content-hash dedup on real Postgres: reuse a completed original, wait for an unfinished one."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Event, Tenant, UsageEntry
from scriptorium.dedup import announce_revision, find_original, served_revision
from scriptorium.lifecycle.claims import claim_document_for_prepare
from scriptorium.lifecycle.documents import admit_duplicate
from scriptorium.lifecycle.sweeping import sweep
from scriptorium.model_families import ModelFamily
from scriptorium.states import DocumentState
from tests.integration.scheduling.conftest import dispatch, document, new_tenant, read_page
from tests.support import builders
from tests.support.invariants import assert_invariants
from tests.support.units import RecordingSink, cancel, unit_of_work

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_queue")]
DEEPSEEK, UNLIMITED = ModelFamily.DEEPSEEK_OCR.value, ModelFamily.UNLIMITED_OCR.value


def _fingerprint() -> str:
    return uuid.uuid4().hex * 2


def _original(
    sessions: sessionmaker[Session],
    owner: Tenant,
    fingerprint: str,
    *,
    pages: int,
    state: DocumentState,
    model: str = DEEPSEEK,
) -> uuid.UUID:
    with sessions.begin() as session:
        return builders.document_with_pages(
            session,
            owner,
            pages=pages,
            state=state,
            dispatched=False,
            dedup_fingerprint=fingerprint,
            model=model,
        ).id


def _read_document(
    sessions: sessionmaker[Session], document_id: uuid.UUID, pages: int, revision: str, model: str = DEEPSEEK
) -> None:
    dispatch(sessions, depth=16)
    for page_no in range(1, pages + 1):
        assert read_page(sessions, document_id, page_no, revision=revision, model=model)


def _upload(
    sessions: sessionmaker[Session], owner: Tenant, fingerprint: str, model: str = DEEPSEEK
) -> uuid.UUID:
    """What the API does for an upload with dedup on: look the fingerprint up, admit as a duplicate."""
    with unit_of_work(sessions) as uow:
        session = uow.session
        new = Document(
            tenant_id=owner.id,
            state=DocumentState.RECEIVED,
            size_bytes=1,
            sha256="0" * 64,
            raw_key="unused",
            task="markdown",
            routing_policy={"mode": "auto"},
            client_metadata={},
            dedup_fingerprint=fingerprint,
            model=model,
        )
        original = find_original(session, owner.id, fingerprint, model=model)
        session.add(new)
        session.flush()
        if original is not None:
            admit_duplicate(uow, new, original)
        return new.id


def _events(sessions: sessionmaker[Session], document_id: uuid.UUID) -> list[str]:
    with sessions() as session:
        return list(session.execute(select(Event.type).where(Event.document_id == document_id)).scalars())


def _ledger_rows(sessions: sessionmaker[Session], document_id: uuid.UUID) -> int:
    with sessions() as session:
        return session.execute(
            select(func.count()).select_from(UsageEntry).where(UsageEntry.document_id == document_id)
        ).scalar_one()


def test_an_upload_matching_a_completed_original_is_completed_at_once_and_costs_nothing(
    db_sessions: sessionmaker[Session],
) -> None:
    owner, fingerprint, revision = new_tenant(db_sessions), _fingerprint(), f"rev-{uuid.uuid4().hex[:8]}"
    original = _original(db_sessions, owner, fingerprint, pages=2, state=DocumentState.PROCESSING)
    _read_document(db_sessions, original, 2, revision)
    with db_sessions.begin() as session:
        announce_revision(session, revision, DEEPSEEK)

    duplicate = _upload(db_sessions, owner, fingerprint)

    reused = document(db_sessions, duplicate)
    assert reused.state == DocumentState.COMPLETED and reused.duplicate_of == original
    assert (reused.vision_tokens, reused.output_tokens, reused.ocr_attempts, reused.pages_total) == (
        0,
        0,
        0,
        0,
    )
    assert _events(db_sessions, duplicate) == ["document.completed"]
    assert _ledger_rows(db_sessions, duplicate) == 0 and _ledger_rows(db_sessions, original) == 2
    assert_invariants(db_sessions, [original, duplicate])


def test_results_of_an_older_model_revision_are_not_reused(db_sessions: sessionmaker[Session]) -> None:
    owner, fingerprint = new_tenant(db_sessions), _fingerprint()
    old, new = f"rev-old-{uuid.uuid4().hex[:8]}", f"rev-new-{uuid.uuid4().hex[:8]}"
    original = _original(db_sessions, owner, fingerprint, pages=1, state=DocumentState.PROCESSING)
    _read_document(db_sessions, original, 1, old)
    with db_sessions.begin() as session:
        announce_revision(session, old, DEEPSEEK)
        assert find_original(session, owner.id, fingerprint, model=DEEPSEEK) is not None
        announce_revision(session, new, DEEPSEEK)  # a worker with new weights started
        assert served_revision(session, DEEPSEEK) == new
        assert find_original(session, owner.id, fingerprint, model=DEEPSEEK) is None


def test_each_model_keeps_its_own_served_revision(db_sessions: sessionmaker[Session]) -> None:
    """A worker of another family starting later does not retire this family's results."""
    owner, fingerprint = new_tenant(db_sessions), _fingerprint()
    deepseek, unlimited = f"rev-ds-{uuid.uuid4().hex[:8]}", f"rev-un-{uuid.uuid4().hex[:8]}"
    original = _original(db_sessions, owner, fingerprint, pages=1, state=DocumentState.PROCESSING)
    _read_document(db_sessions, original, 1, deepseek)
    with db_sessions.begin() as session:
        announce_revision(session, deepseek, DEEPSEEK)
        announce_revision(session, unlimited, UNLIMITED)
        assert (served_revision(session, DEEPSEEK), served_revision(session, UNLIMITED)) == (
            deepseek,
            unlimited,
        )
        found = find_original(session, owner.id, fingerprint, model=DEEPSEEK)
        assert found is not None and found.id == original


def test_a_result_is_never_reused_for_another_model(db_sessions: sessionmaker[Session]) -> None:
    """Even under the same fingerprint (which the model is part of), another model's original is
    not reused, completed or in progress; the same model's is."""
    owner, fingerprint, revision = new_tenant(db_sessions), _fingerprint(), f"rev-{uuid.uuid4().hex[:8]}"
    completed = _original(db_sessions, owner, fingerprint, pages=1, state=DocumentState.PROCESSING)
    with db_sessions() as session:  # in progress: an upload for another model does not wait on it
        assert find_original(session, owner.id, fingerprint, model=UNLIMITED) is None
    _read_document(db_sessions, completed, 1, revision)
    with db_sessions.begin() as session:
        announce_revision(session, revision, DEEPSEEK)
        assert find_original(session, owner.id, fingerprint, model=UNLIMITED) is None

    other = _upload(db_sessions, owner, fingerprint, model=UNLIMITED)
    same = _upload(db_sessions, owner, fingerprint, model=DEEPSEEK)

    assert document(db_sessions, other).duplicate_of is None
    assert document(db_sessions, same).duplicate_of == completed
    # The unlimited-ocr upload is in progress: later ones of its model wait on it.
    with db_sessions() as session:
        waiting_on = find_original(session, owner.id, fingerprint, model=UNLIMITED)
        assert waiting_on is not None and waiting_on.id == other


def test_dedup_is_per_tenant(db_sessions: sessionmaker[Session]) -> None:
    fingerprint = _fingerprint()
    _original(db_sessions, new_tenant(db_sessions), fingerprint, pages=0, state=DocumentState.RECEIVED)
    stranger = new_tenant(db_sessions)
    with db_sessions() as session:
        assert find_original(session, stranger.id, fingerprint, model=DEEPSEEK) is None


def test_a_duplicate_waits_for_an_unfinished_original_and_completes_with_it(
    db_sessions: sessionmaker[Session],
) -> None:
    owner, fingerprint = new_tenant(db_sessions), _fingerprint()
    original = _original(db_sessions, owner, fingerprint, pages=2, state=DocumentState.PROCESSING)
    duplicate = _upload(db_sessions, owner, fingerprint)

    waiting = document(db_sessions, duplicate)
    assert waiting.state == DocumentState.RECEIVED and waiting.duplicate_of == original
    sink = RecordingSink()
    with unit_of_work(db_sessions, sink) as uow:  # it is never prepared: no claim, no re-send by the sweeper
        assert claim_document_for_prepare(uow.session, duplicate, lease_s=60, max_attempts=3) is None
        sweep(uow, lost_after_s=0, prepare_attempts=3)
    assert duplicate not in [document_id for document_id, _ in sink.documents]

    _read_document(db_sessions, original, 2, "rev-1")
    assert document(db_sessions, duplicate).state == DocumentState.RECEIVED
    dispatch(db_sessions, depth=16)  # the next dispatch (after every page, every sweep) settles it

    reused = document(db_sessions, duplicate)
    assert reused.state == DocumentState.COMPLETED and reused.duplicate_of == original
    assert (
        _events(db_sessions, duplicate) == ["document.completed"]
        and _ledger_rows(db_sessions, duplicate) == 0
    )
    assert_invariants(db_sessions, [original, duplicate])


# Commits (`sessions`): the order of creation times matters, and inside one rolled-back
# transaction now() gives every row the same time.
def test_when_the_original_is_cancelled_the_oldest_duplicate_is_read_and_the_others_wait_on_it(
    sessions: sessionmaker[Session],
) -> None:
    owner, fingerprint = new_tenant(sessions), _fingerprint()
    original = _original(sessions, owner, fingerprint, pages=0, state=DocumentState.RECEIVED)
    first, second = _upload(sessions, owner, fingerprint), _upload(sessions, owner, fingerprint)
    assert document(sessions, second).duplicate_of == original  # both wait on the root
    cancel(sessions, original)

    plan = dispatch(sessions, depth=16)

    assert [document_id for document_id, _ in plan.documents] == [first]  # sent to preparation
    promoted, follower = document(sessions, first), document(sessions, second)
    assert promoted.state == DocumentState.RECEIVED and promoted.duplicate_of is None
    assert follower.state == DocumentState.RECEIVED and follower.duplicate_of == first
    with sessions.begin() as session:
        assert find_original(session, owner.id, fingerprint, model=DEEPSEEK).id == first  # type: ignore[union-attr]
        assert claim_document_for_prepare(session, first, lease_s=60, max_attempts=3) is not None
    assert_invariants(sessions, [original, first, second])


def test_cancelling_a_waiting_duplicate_leaves_its_original_alone(db_sessions: sessionmaker[Session]) -> None:
    owner, fingerprint = new_tenant(db_sessions), _fingerprint()
    original = _original(db_sessions, owner, fingerprint, pages=1, state=DocumentState.PROCESSING)
    duplicate = _upload(db_sessions, owner, fingerprint)
    cancel(db_sessions, duplicate)

    _read_document(db_sessions, original, 1, "rev-1")
    dispatch(db_sessions, depth=16)

    assert document(db_sessions, original).state == DocumentState.COMPLETED
    assert document(db_sessions, duplicate).state == DocumentState.CANCELLED
    assert_invariants(db_sessions, [original, duplicate])
