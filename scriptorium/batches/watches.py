"""Watched prefixes: registration, the objects they see, and claiming those objects for intake.

An object is recorded once per (watch, key, etag) whichever path saw it first — a bucket
notification posted to the API, or the poller listing keys after its persisted marker — and
the other path only notes that it saw it too. Intake claims recorded objects with a lease
(``lease_expires_at``, writes fenced on ``lease_token``), so the notification-triggered run and
the poller never both ingest one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from scriptorium.acceptance import DocumentOptions
from scriptorium.batches.states import IntakeReason, WatchObjectState
from scriptorium.db.models import Watch, WatchObject
from scriptorium.leases import expired, lease_until, seconds_ago

TOKEN_PREFIX = "wt_"  # noqa: S105 - the marker of a watch token, not a secret
_NAMESPACE = uuid.UUID("a3f61b2e-59d4-4c8e-8d62-0e7c39d5b8f1")


class SeenBy(StrEnum):
    NOTIFICATION = "notification"
    POLL = "poll"


@dataclass(frozen=True)
class SeenObject:
    key: str
    etag: str
    size: int | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(watch: Watch, token: str) -> bool:
    return hmac.compare_digest(_hash(token), watch.token_hash)


def object_document_id(object_id: int) -> uuid.UUID:
    """The id of the document a watched object becomes: the same on every attempt."""
    return uuid.uuid5(_NAMESPACE, f"watch-object:{object_id}")


def create_watch(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    source: str,
    bucket: str,
    prefix: str,
    options: DocumentOptions,
    name: str | None = None,
) -> tuple[Watch, str]:
    """A new watch and its notification token (returned once; only its hash is kept)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    watch = Watch(
        tenant_id=tenant_id,
        name=name,
        source=source.lower(),
        bucket=bucket,
        prefix=prefix,
        options=options.model_dump(mode="json", exclude_none=True),
        token_hash=_hash(token),
    )
    session.add(watch)
    session.flush()
    session.refresh(watch)
    return watch, token


def rotate_token(watch: Watch) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    watch.token_hash = _hash(token)
    watch.updated_at = func.now()
    return token


def find_watch(session: Session, watch_id: uuid.UUID, tenant_id: uuid.UUID | None = None) -> Watch | None:
    query = select(Watch).where(Watch.id == watch_id, Watch.deleted_at.is_(None))
    if tenant_id is not None:
        query = query.where(Watch.tenant_id == tenant_id)
    return session.execute(query).scalar_one_or_none()


def in_scope(watch: Watch, bucket: str, key: str) -> bool:
    return bucket == watch.bucket and key.startswith(watch.prefix) and not key.endswith("/")


def record_objects(
    session: Session, watch_id: uuid.UUID, objects: Sequence[SeenObject], seen_by: SeenBy
) -> int:
    """Note what a path saw; returns how many objects are new to the watch."""
    if not objects:
        return 0
    seen_column = "notified_at" if seen_by is SeenBy.NOTIFICATION else "listed_at"
    statement = insert(WatchObject).values(
        [
            {
                "watch_id": watch_id,
                "key": obj.key,
                "etag": obj.etag,
                "size_bytes": obj.size,
                "state": WatchObjectState.PENDING,
                "fetch_attempts": 0,
                seen_column: func.now(),
            }
            for obj in {(o.key, o.etag): o for o in objects}.values()
        ]
    )
    column = getattr(WatchObject, seen_column)
    rows = session.execute(
        statement.on_conflict_do_update(
            constraint="uq_watch_objects_watch_key_etag",
            set_={seen_column: func.coalesce(column, func.now())},
        ).returning(WatchObject.created_at == func.now())
    ).all()
    return sum(1 for (inserted,) in rows if inserted)


def due_for_polling(session: Session, *, interval_s: float, limit: int) -> list[Watch]:
    """Enabled watches whose last poll is older than the interval; stamped as polled now."""
    watches = list(
        session.execute(
            select(Watch)
            .where(
                Watch.enabled.is_(True),
                Watch.deleted_at.is_(None),
                or_(
                    Watch.polled_at.is_(None),
                    Watch.polled_at < seconds_ago(interval_s),
                ),
            )
            .order_by(Watch.polled_at.nulls_first())
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    for watch in watches:
        watch.polled_at = func.now()
    session.flush()
    return watches


def advance_marker(session: Session, watch_id: uuid.UUID, marker: str) -> None:
    session.execute(
        update(Watch).where(Watch.id == watch_id).values(poll_marker=marker, updated_at=func.now())
    )


@dataclass(frozen=True)
class ObjectClaim:
    object_id: int
    watch_id: uuid.UUID
    key: str
    etag: str
    lease_token: uuid.UUID


def claim_objects(session: Session, watch_id: uuid.UUID, *, limit: int, lease_s: float) -> list[ObjectClaim]:
    """Lease recorded objects that nobody is ingesting, oldest first."""
    due = (
        select(WatchObject.id)
        .where(
            WatchObject.watch_id == watch_id,
            or_(
                WatchObject.state == WatchObjectState.PENDING,
                and_(
                    WatchObject.state == WatchObjectState.INGESTING,
                    expired(WatchObject.lease_expires_at),
                ),
            ),
        )
        .order_by(WatchObject.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    rows = session.execute(
        update(WatchObject)
        .where(WatchObject.id == due.c.id)
        .values(
            state=WatchObjectState.INGESTING,
            lease_token=func.gen_random_uuid(),
            lease_expires_at=lease_until(lease_s),
            updated_at=func.now(),
        )
        .returning(WatchObject.id, WatchObject.key, WatchObject.etag, WatchObject.lease_token)
    ).all()
    return [ObjectClaim(row.id, watch_id, row.key, row.etag, row.lease_token) for row in sorted(rows)]


def _held(claim: ObjectClaim) -> tuple[Any, ...]:
    return (
        WatchObject.id == claim.object_id,
        WatchObject.state == WatchObjectState.INGESTING,
        WatchObject.lease_token == claim.lease_token,
    )


def still_held(session: Session, claim: ObjectClaim) -> bool:
    """Lock the claimed row; False when another run took it over."""
    row = session.execute(select(WatchObject.id).where(*_held(claim)).with_for_update()).first()
    return row is not None


def mark_ingested(session: Session, claim: ObjectClaim, document_id: uuid.UUID, size: int) -> None:
    session.execute(
        update(WatchObject)
        .where(*_held(claim))
        .values(
            state=WatchObjectState.INGESTED,
            document_id=document_id,
            size_bytes=size,
            lease_token=None,
            lease_expires_at=None,
            updated_at=func.now(),
        )
    )


def reject_object(session: Session, claim: ObjectClaim, reason: IntakeReason | str, message: str) -> None:
    session.execute(
        update(WatchObject)
        .where(*_held(claim))
        .values(
            state=WatchObjectState.REJECTED,
            error_code=str(reason),
            error_message=message,
            lease_token=None,
            lease_expires_at=None,
            updated_at=func.now(),
        )
    )


def release_after_failure(session: Session, claim: ObjectClaim, *, max_attempts: int, message: str) -> None:
    """A transient failure: back to pending for the next run, rejected once attempts run out."""
    attempts = session.execute(
        update(WatchObject)
        .where(*_held(claim))
        .values(
            state=WatchObjectState.PENDING,
            fetch_attempts=WatchObject.fetch_attempts + 1,
            lease_token=None,
            lease_expires_at=None,
            error_message=message,
            updated_at=func.now(),
        )
        .returning(WatchObject.fetch_attempts)
    ).scalar_one_or_none()
    if attempts is not None and attempts >= max_attempts:
        session.execute(
            update(WatchObject)
            .where(WatchObject.id == claim.object_id, WatchObject.state == WatchObjectState.PENDING)
            .values(
                state=WatchObjectState.REJECTED,
                error_code=IntakeReason.SOURCE_UNAVAILABLE,
                updated_at=func.now(),
            )
        )


def object_counts(session: Session, watch_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(WatchObject.state, func.count())
        .where(WatchObject.watch_id == watch_id)
        .group_by(WatchObject.state)
    ).all()
    return {state: count for state, count in rows}
