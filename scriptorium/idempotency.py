"""``Idempotency-Key`` for create calls: a repeated request answers with what the first one created.

A table whose rows a create call makes carries ``tenant_id`` and ``idempotency_key`` columns
under a unique constraint on the pair. The call looks the key up first and, if it finds a row,
answers with it (``Idempotent-Replayed: true``) instead of creating another. Two requests with
the same key racing past that lookup meet at the constraint: the loser's savepoint rolls back,
it undoes what it did outside the database (``undo``) and answers with the winner's row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scriptorium.errors import DomainError

REPLAYED_HEADER = "Idempotent-Replayed"


class KeyedRow(Protocol):
    tenant_id: uuid.UUID
    idempotency_key: str | None


RowT = TypeVar("RowT", bound=KeyedRow)


class InvalidIdempotencyKey(DomainError):
    """An ``Idempotency-Key`` header that is present but names nothing (empty or blank)."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_idempotency_key", message)


def check_key(key: str | None) -> None:
    """Refuse a present but blank key: it would be stored, and every later blank key would meet
    it at the unique constraint. An absent header (None) means no idempotency."""
    if key is not None and not key.strip():
        raise InvalidIdempotencyKey("the Idempotency-Key header is empty; send a non-blank key or none")


def find_by_key(session: Session, model: type[RowT], tenant_id: uuid.UUID, key: str | None) -> RowT | None:
    """The tenant's row created under ``key``, if any; InvalidIdempotencyKey for a blank key
    (rows an earlier version stored under one are never looked up)."""
    check_key(key)
    if key is None:
        return None
    columns = model.__table__.c  # type: ignore[attr-defined]
    row: RowT | None = session.execute(
        select(model).where(columns.tenant_id == tenant_id, columns.idempotency_key == key)
    ).scalar_one_or_none()
    return row


def insert_or_replay(
    session: Session,
    row: RowT,
    *,
    stage: Callable[[], None] | None = None,
    undo: Callable[[], None] | None = None,
) -> tuple[RowT, bool]:
    """Insert ``row``; if its key was taken meanwhile, the row that took it.

    The insert and ``stage`` (what else the new row brings, run after the row is flushed) happen
    in a savepoint, so a clash on the key undoes just them: ``undo`` runs (for what was done
    outside the database) and the earlier row is returned. The caller's unit of work commits.
    Returns the row to answer with and whether it is a replay. An integrity error that is not
    about the key is raised again.
    """
    try:
        with session.begin_nested():  # flushes what was pending before, so only the row is at stake
            session.add(row)
            session.flush()
            if stage is not None:
                stage()
    except IntegrityError:
        existing = find_by_key(session, type(row), row.tenant_id, row.idempotency_key)
        if existing is None:
            raise
        if undo is not None:
            undo()
        return existing, True
    return row, False
