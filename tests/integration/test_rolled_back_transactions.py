"""The rolled-back test transaction: commits inside it are savepoints and nothing reaches the database."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Tenant
from scriptorium.unit_of_work import UnitOfWorkFactory
from tests.support import builders
from tests.support.transactions import rolled_back_connection, savepoint_sessions

pytestmark = pytest.mark.integration


def test_what_a_test_commits_is_seen_only_inside_it_and_gone_after_it(
    db_engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with rolled_back_connection(db_engine) as connection:
        inside = savepoint_sessions(connection)
        with inside.begin() as session:
            tenant_id = builders.tenant(session).tenant.id
        with inside() as session:
            session.commit()  # code under test may commit; it only ends a savepoint
            assert session.get(Tenant, tenant_id) is not None
        with sessions() as elsewhere:
            assert elsewhere.get(Tenant, tenant_id) is None
    with sessions() as afterwards:
        assert afterwards.get(Tenant, tenant_id) is None


def test_a_failed_block_undoes_only_its_own_savepoint(db_sessions: sessionmaker[Session]) -> None:
    with db_sessions.begin() as session:
        tenant_id = builders.tenant(session).tenant.id
    with pytest.raises(IntegrityError), db_sessions.begin() as session:
        session.add(
            Document(
                tenant_id=uuid.uuid4(),  # no such tenant
                size_bytes=1,
                sha256="0" * 64,
                raw_key="unused",
                task="markdown",
                routing_policy={},
                client_metadata={},
            )
        )
    with db_sessions() as session:
        assert session.get(Tenant, tenant_id) is not None


def test_one_session_sees_the_test_s_earlier_writes(
    db_sessions: sessionmaker[Session], db_session: Session
) -> None:
    with db_sessions.begin() as session:
        tenant_id = builders.tenant(session).tenant.id
    assert db_session.get(Tenant, tenant_id) is not None


def test_units_of_work_commit_savepoints_and_record_what_they_publish(
    db_units: UnitOfWorkFactory, sessions: sessionmaker[Session]
) -> None:
    with db_units.committing() as uow:
        owner = builders.tenant(uow.session).tenant
        document_id = builders.document_with_pages(uow.session, owner, pages=1).id
        uow.outbox.assemble(document_id)
    assert [message.kwargs["document_id"] for message in db_units.sink.published] == [str(document_id)]  # type: ignore[attr-defined]
    with db_units() as uow:
        assert uow.session.get(Document, document_id) is not None
    with sessions() as elsewhere:
        assert elsewhere.get(Document, document_id) is None
