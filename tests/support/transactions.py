"""Tests that only need the database run inside one transaction that is rolled back at the end.

Nothing such a test writes is ever committed: it neither sees what later tests write nor leaves
anything for them, so it does not depend on the order tests run in. Sessions bound to the
connection use ``join_transaction_mode="create_savepoint"``: the code under test may still call
``commit()`` or ``rollback()`` (and ``sessions.begin()`` blocks may end in either), each of which
only ends a savepoint inside the outer transaction.

Postgres' ``now()`` is the start of the transaction, so inside one of these tests it does not move:
a test about an expired lease expires it with an UPDATE instead of sleeping. Tests that need
several transactions at once (threads racing for rows, worker processes) use the committing
``sessions`` fixture instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker


@contextmanager
def rolled_back_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside an outer transaction that is rolled back when the block ends."""
    with engine.connect() as connection:
        outer = connection.begin()
        try:
            yield connection
        finally:
            outer.rollback()


def savepoint_sessions(connection: Connection) -> sessionmaker[Session]:
    """Sessions on ``connection`` whose transactions are savepoints of the connection's transaction."""
    return sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
