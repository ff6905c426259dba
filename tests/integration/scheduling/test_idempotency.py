"""The Idempotency-Key helper on a real unique constraint: lookup, and the race at commit."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Tenant
from scriptorium.idempotency import find_by_key, insert_or_replay
from tests.integration.scheduling.conftest import new_tenant

pytestmark = pytest.mark.integration


def _document(owner: Tenant, key: str | None) -> Document:
    return Document(
        tenant_id=owner.id,
        idempotency_key=key,
        size_bytes=1,
        sha256="0" * 64,
        raw_key="unused",
        task="markdown",
        routing_policy={},
        client_metadata={},
    )


def test_a_key_finds_only_its_tenant_s_row(sessions: sessionmaker[Session]) -> None:
    owner, stranger, key = new_tenant(sessions), new_tenant(sessions), f"upload-{uuid.uuid4()}"
    with sessions.begin() as session:
        session.add(_document(owner, key))
    with sessions() as session:
        assert find_by_key(session, Document, owner.id, key) is not None
        assert find_by_key(session, Document, stranger.id, key) is None
        assert find_by_key(session, Document, owner.id, None) is None


def test_the_loser_of_a_race_on_a_key_answers_with_the_winner_s_row(sessions: sessionmaker[Session]) -> None:
    owner, key = new_tenant(sessions), f"upload-{uuid.uuid4()}"
    undone: list[bool] = []
    with sessions() as first, sessions() as second:
        winner, loser = _document(owner, key), _document(owner, key)
        # both looked the key up before either committed
        assert insert_or_replay(first, winner) == (winner, False)
        first.commit()
        answered, replayed = insert_or_replay(second, loser, undo=lambda: undone.append(True))
        assert replayed and answered.id == winner.id and undone == [True]
        assert loser not in second  # the loser's insert was undone with its savepoint


def test_other_integrity_errors_are_not_mistaken_for_a_replay(sessions: sessionmaker[Session]) -> None:
    orphan = _document(new_tenant(sessions), f"upload-{uuid.uuid4()}")
    orphan.tenant_id = uuid.uuid4()  # no such tenant: a foreign key error, not a key clash
    with sessions() as session, pytest.raises(IntegrityError):
        insert_or_replay(session, orphan)
